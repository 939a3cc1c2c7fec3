#!/usr/bin/python3
"""Tests of tools/onnx_conformance.py's own logic (selection, classification, the declined
file, skips), run against fake_infer.py instead of talkrender so they do not depend on the
runtime's state."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools", "onnx_conformance.py")
FAKE = os.path.join(HERE, "fake_infer.py")
TESTDATA = "/usr/share/libonnx-testdata/data"
PYTHON = "/usr/bin/python3"


def run_runner(*args, plan=None):
    env = dict(os.environ)
    env["FAKE_INFER_PLAN"] = json.dumps(plan or {})
    proc = subprocess.run([PYTHON, RUNNER, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    return proc.returncode, proc.stdout


@unittest.skipUnless(os.path.isdir(os.path.join(TESTDATA, "node")), "libonnx-testdata missing")
class RunnerTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.declined = os.path.join(self.tmp.name, "declined.txt")
        self.json = os.path.join(self.tmp.name, "results.json")

    def tearDown(self):
        self.tmp.cleanup()

    def results(self):
        with open(self.json) as f:
            return {(r["backend"], r["case"].split("/")[1]): r for r in json.load(f)["results"]}

    def test_selection_matches_the_issue(self):
        rc, out = run_runner("--list")
        self.assertEqual(rc, 0, out)
        ids = [l.split()[0] for l in out.splitlines()[1:]]
        self.assertEqual(len(ids), 102, out)
        self.assertIn("node/test_identity_sequence", ids)  # see the runner's docstring
        self.assertIn("pytorch-converted/test_Conv2d", ids)
        self.assertNotIn("node/test_reshape_one_dim", ids)  # int64 shape input
        self.assertNotIn("node/test_add_uint8", ids)
        self.assertNotIn("node/test_batchnorm_example_training_mode", ids)  # 3 outputs
        rc, out = run_runner("--list", "--extended")
        self.assertIn("+33 extended", out.splitlines()[0])

    def test_classification(self):
        plan = {
            "ref:test_relu": "pass", "cpu:test_relu": "wrong",
            "ref:test_sigmoid": "badshape", "cpu:test_sigmoid": "nooutput",
            "ref:test_Conv3d": "decline", "cpu:test_Conv3d": "decline-vague",
            "ref:test_Conv3d_stride": "decline-multiline", "cpu:test_Conv3d_stride": "exit3",
            "ref:test_Conv3d_groups": "segv", "cpu:test_Conv3d_groups": "sanitizer",
            "ref:test_Conv3d_no_bias": "hang", "cpu:test_Conv3d_no_bias": "pass",
            "ref:test_identity_sequence": "decline", "cpu:test_identity_sequence": "pass",
        }
        rc, out = run_runner("--talkrender", FAKE, "--declined", self.declined, "--json",
                             self.json, "--timeout", "15", "--filter",
                             r"/test_(relu|sigmoid|Conv3d(_stride|_groups|_no_bias)?"
                             r"|identity_sequence)$", plan=plan)
        self.assertEqual(rc, 1, out)
        res = self.results()
        expect = {
            ("ref", "test_relu"): "pass", ("cpu", "test_relu"): "wrong",
            ("ref", "test_sigmoid"): "wrong", ("cpu", "test_sigmoid"): "wrong",
            ("ref", "test_Conv3d"): "declined", ("cpu", "test_Conv3d"): "wrong",
            ("ref", "test_Conv3d_stride"): "wrong", ("cpu", "test_Conv3d_stride"): "wrong",
            ("ref", "test_Conv3d_groups"): "crash", ("cpu", "test_Conv3d_groups"): "crash",
            ("ref", "test_Conv3d_no_bias"): "crash", ("cpu", "test_Conv3d_no_bias"): "pass",
            ("ref", "test_identity_sequence"): "declined",
            ("cpu", "test_identity_sequence"): "wrong",
        }
        got = {k: res[k]["status"] for k in expect}
        self.assertEqual(got, expect, out)
        self.assertIn("SIGSEGV", res[("ref", "test_Conv3d_groups")]["detail"])
        self.assertIn("elements differ", res[("cpu", "test_relu")]["detail"])
        self.assertIn("conv3d", res[("ref", "test_Conv3d")]["features"])
        self.assertIn("declined set differs", out)

    def test_declined_file_round_trip(self):
        plan = {"ref:test_Conv1d": "decline", "cpu:test_Conv1d": "decline"}
        args = ["--talkrender", FAKE, "--declined", self.declined, "--filter",
                r"/test_(Conv1d|ReLU)$", "--min-pass-rate", "0.5"]
        rc, out = run_runner(*args, plan=plan)
        self.assertEqual(rc, 1, out)  # the file does not list the declined cases yet
        self.assertIn("+ ref pytorch-converted/test_Conv1d", out)
        rc, out = run_runner(*args, "--update-declined", plan=plan)
        self.assertEqual(rc, 0, out)
        with open(self.declined) as f:
            listed = [l.split()[:2] for l in f if l.strip() and l[0] != "#"]
        self.assertEqual(sorted(listed), [["cpu", "pytorch-converted/test_Conv1d"],
                                          ["ref", "pytorch-converted/test_Conv1d"]])
        rc, out = run_runner(*args, plan=plan)
        self.assertEqual(rc, 0, out)
        # the runtime learns the case: the stale entry must fail the run
        rc, out = run_runner(*args, plan={"ref:test_Conv1d": "decline"})
        self.assertEqual(rc, 1, out)
        self.assertIn("- cpu pytorch-converted/test_Conv1d   (in the file, now: pass)", out)

    def test_pass_rate_gate(self):
        plan = {"ref:test_Conv1d": "decline", "cpu:test_Conv1d": "decline"}
        args = ["--talkrender", FAKE, "--declined", self.declined, "--filter",
                r"/test_(Conv1d|ReLU)$", "--update-declined"]
        rc, out = run_runner(*args, plan=plan)  # 1 of 2 passes: 50% < 85%
        self.assertEqual(rc, 1, out)
        self.assertIn("backend ref passes 50.0% < 85%", out)

    def test_skips_when_binary_missing(self):
        rc, out = run_runner("--talkrender", os.path.join(self.tmp.name, "nope"))
        self.assertEqual(rc, 77, out)
        rc, out = run_runner("--testdata", self.tmp.name, "--talkrender", FAKE)
        self.assertEqual(rc, 77, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
