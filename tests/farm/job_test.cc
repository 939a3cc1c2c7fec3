// farm/job.h and the Redis URL parser: what a worker accepts from a stream entry, and the
// roots its paths may not leave (the end-to-end cases are in farm_test.py).
#include "farm/job.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "farm/redis_client.h"

namespace fs = std::filesystem;
using tr::farm::parse_job;

namespace {

struct TempRoot {
  fs::path dir;
  TempRoot() {
    char t[] = "/tmp/farm-job-test-XXXXXX";
    dir = ::mkdtemp(t);
  }
  ~TempRoot() { fs::remove_all(dir); }
};

std::string error_of(std::string_view json, bool inline_audio) {
  auto r = parse_job(json, inline_audio);
  return r.ok() ? "" : r.error().message;
}

}  // namespace

TEST(FarmJob, ParsesAFullJob) {
  auto j = parse_job(
      R"({"id":"J-1.a:b","avatar":"anna","audio":"t/a.wav","out":"anna/a.mp4","frames":50,)"
      R"("batch":2,"crf":18,"format":"png","precision":"fp32"})",
      false);
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_EQ(j->id, "J-1.a:b");
  EXPECT_EQ(*j->frames, 50);
  tr::render::RenderJobOptions o;
  ASSERT_TRUE(tr::farm::apply_job_options(*j, &o).ok());
  EXPECT_EQ(o.batch, 2);
  EXPECT_EQ(o.crf, 18);
  EXPECT_EQ(o.frames, 50);
  // Canonical: sorted keys, so the manifest matches whatever order the producer used.
  auto k = parse_job(
      R"({"precision":"fp32","format":"png","crf":18,"batch":2,"frames":50,"out":"anna/a.mp4",)"
      R"("audio":"t/a.wav","avatar":"anna","id":"J-1.a:b"})",
      false);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(j->canonical_json(), k->canonical_json());
}

TEST(FarmJob, RefusesMalformedJobs) {
  EXPECT_NE(error_of("{", true).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("[1]", true).find("object"), std::string::npos);
  EXPECT_NE(error_of(R"({"avatar":"a","out":"o.mp4"})", true).find("no \"id\""), std::string::npos);
  EXPECT_NE(error_of(R"({"id":"a b","avatar":"a","out":"o.mp4"})", true).find("job id"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id":"j","avatar":"a","out":"o.mp4","frame":3})", true)
                .find("unknown field \"frame\""),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id":"j","avatar":"a","out":"o.mp4","frames":"3"})", true).find("integer"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id":"j","avatar":"a","out":"o.mp4"})", false).find("no audio"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id":"j","avatar":"a","out":"o.mp4","audio":"x.wav"})", true).find("both"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id":"j","x":[[[[[[[[[[1]]]]]]]]]]})", true).find("nests"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(70000, ' '), true).find("more than"), std::string::npos);
  // The render flags' own checks and messages (render/render_flags.h), naming the field.
  EXPECT_NE(error_of(R"({"id":"j","avatar":"a","out":"o.mp4","batch":0})", true)
                .find("job j: batch must be >= 1"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id":"j","avatar":"a","out":"o.mp4","crf":52})", true).find("crf"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id":"j","avatar":"a","out":"o.mp4","precision":"fp8"})", true)
                .find("job j: precision"),
            std::string::npos);
}

TEST(FarmJob, RefusesPathsThatLeaveTheirRoot) {
  for (const char* avatar : {"../a", "a/b", "/a", "..", "."}) {
    std::string j = std::string(R"({"id":"j","out":"o.mp4","avatar":")") + avatar + "\"}";
    EXPECT_NE(error_of(j, true).find("not a path"), std::string::npos) << avatar;
  }
  for (const char* out : {"../o.mp4", "a/../../o.mp4", "/tmp/o.mp4", "a/b c.mp4", ""}) {
    std::string j = std::string(R"({"id":"j","avatar":"a","out":")") + out + "\"}";
    EXPECT_FALSE(error_of(j, true).empty()) << out;
  }
}

TEST(FarmJob, OutputsStayUnderTheRoot) {
  TempRoot t;
  const fs::path root = t.dir / "out", outside = t.dir / "outside";
  fs::create_directories(root);
  fs::create_directories(outside);
  auto p = tr::farm::prepare_output(root, "a/b/c.mp4");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(*p, (fs::canonical(root) / "a/b/c.mp4").string());
  EXPECT_TRUE(fs::is_directory(root / "a/b"));
  auto d = tr::farm::prepare_output(root, "frames/");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->back(), '/');
  fs::create_directory_symlink(outside, root / "link");
  auto l = tr::farm::prepare_output(root, "link/sub/x.mp4");
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.error().message.find("leaves --out-root"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(outside));  // nothing made through the link
  fs::create_symlink(outside / "v.mp4", root / "v.mp4");
  EXPECT_FALSE(tr::farm::prepare_output(root, "v.mp4").ok());
  // A link that stays inside is fine.
  fs::create_directory_symlink(root / "a", root / "inner");
  EXPECT_TRUE(tr::farm::prepare_output(root, "inner/y.mp4").ok());
}

TEST(FarmJob, AvatarsAndInputsStayUnderTheirRoots) {
  TempRoot t;
  fs::create_directories(t.dir / "avatars/anna");
  fs::create_directories(t.dir / "elsewhere/bob");
  fs::create_directory_symlink(t.dir / "elsewhere/bob", t.dir / "avatars/bob");
  fs::create_directory_symlink(t.dir / "avatars/anna", t.dir / "avatars/anna2");
  EXPECT_TRUE(tr::farm::resolve_avatar(t.dir / "avatars", "anna").ok());
  EXPECT_TRUE(tr::farm::resolve_avatar(t.dir / "avatars", "anna2").ok());
  auto b = tr::farm::resolve_avatar(t.dir / "avatars", "bob");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("outside --avatars"), std::string::npos);
  EXPECT_FALSE(tr::farm::resolve_avatar(t.dir / "avatars", "carol").ok());
  fs::create_directories(t.dir / "in/x");
  std::ofstream(t.dir / "in/x/a.wav") << "RIFF";
  std::ofstream(t.dir / "secret.wav") << "RIFF";
  fs::create_symlink(t.dir / "secret.wav", t.dir / "in/s.wav");
  EXPECT_TRUE(tr::farm::resolve_input(t.dir / "in", "x/a.wav").ok());
  EXPECT_FALSE(tr::farm::resolve_input(t.dir / "in", "s.wav").ok());
  EXPECT_FALSE(tr::farm::resolve_input(t.dir / "in", "../secret.wav").ok());
  EXPECT_FALSE(tr::farm::resolve_input(t.dir / "in", "x").ok());  // a folder
}

TEST(FarmRedisUrl, Parses) {
  auto u = tr::farm::parse_redis_url("redis://10.0.0.5:6380/2");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "10.0.0.5");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->db, 2);
  auto d = tr::farm::parse_redis_url("redis://cache");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->port, 6379);
  auto v6 = tr::farm::parse_redis_url("redis://[::1]:7000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  for (const char* bad :
       {"http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h/x", "redis://u:p@h"}) {
    EXPECT_FALSE(tr::farm::parse_redis_url(bad).ok()) << bad;
  }
}
