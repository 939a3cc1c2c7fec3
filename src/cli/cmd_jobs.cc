// talkrender jobs: what the farm holds: pending, running, done and dead jobs.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "farm/redis_client.h"
#include "farm/worker.h"

namespace tr::cli {
namespace {

using nlohmann::json;

std::string field_of(const farm::Reply& kv, const std::string& key) {
  for (size_t i = 0; i + 1 < kv.elements.size(); i += 2)
    if (kv.elements[i].str == key) return kv.elements[i + 1].str;
  return "";
}

std::string job_id_of(const farm::Reply& kv) {
  json j = json::parse(field_of(kv, "job"), nullptr, false);
  if (j.is_object() && j.contains("id") && j["id"].is_string()) return j["id"].get<std::string>();
  return "?";
}

}  // namespace

int cmd_jobs(int argc, char** argv) {
  std::string url, stream = "talkrender:jobs", group = "renderers";
  int limit = 50;
  bool json_out = false;
  CLI::App app{
      "List the farm's jobs: pending (queued, not yet taken), running (taken by a worker: "
      "who, for how long, how many deliveries), done and dead (from STREAM:results, newest "
      "first).",
      "talkrender jobs"};
  app.add_option("--redis", url, "Redis server: redis://HOST[:PORT][/DB]")->required();
  app.add_option("--stream", stream, "job stream (default talkrender:jobs)");
  app.add_option("--group", group, "consumer group (default renderers)");
  app.add_option("--limit", limit, "at most N jobs per list (default 50)")
      ->check(CLI::Range(1, 100000));
  app.add_flag("--json", json_out,
               "print {\"pending\": [...], \"running\": [...], \"done\": [...], \"dead\": "
               "[...]} as JSON");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  auto u = farm::parse_redis_url(url);
  if (!u.ok()) return report_error(app, u.error());
  farm::RedisClient c(*u, std::chrono::milliseconds(10000));
  const farm::StreamKeys keys(stream);
  const std::string n = std::to_string(limit);
  auto cmd = [&](const std::vector<std::string>& a) -> Result<farm::Reply> {
    auto r = c.command(a);
    if (!r.ok()) return r.error();
    if (r->is_error()) return RuntimeError(a[0] + " " + a[1] + ": " + r->str);
    return r;
  };
  json out = {{"pending", json::array()},
              {"running", json::array()},
              {"done", json::array()},
              {"dead", json::array()}};
  // Pending: entries after the group's last delivered id.
  std::string last = "0-0";
  auto groups = c.command({"XINFO", "GROUPS", stream});
  if (!groups.ok()) return report_error(app, groups.error());
  if (groups->is_array()) {
    for (const auto& g : groups->elements) {
      if (field_of(g, "name") == group) last = field_of(g, "last-delivered-id");
    }
  }
  if (auto r = cmd({"XRANGE", stream, "(" + last, "+", "COUNT", n}); r.ok()) {
    for (const auto& e : r->elements)
      if (e.elements.size() >= 2)
        out["pending"].push_back({{"id", job_id_of(e.elements[1])}, {"entry", e.elements[0].str}});
  } else if (last != "0-0" || groups->is_array()) {
    return report_error(app, r.error());
  }
  if (groups->is_array()) {
    auto p = cmd({"XPENDING", stream, group, "-", "+", n});
    if (!p.ok()) return report_error(app, p.error());
    for (const auto& e : p->elements) {
      if (e.elements.size() < 4) continue;
      const std::string id = e.elements[0].str;
      auto body = cmd({"XRANGE", stream, id, id});
      std::string job = "?";
      if (body.ok() && !body->elements.empty() && body->elements[0].elements.size() >= 2)
        job = job_id_of(body->elements[0].elements[1]);
      out["running"].push_back({{"id", job},
                                {"entry", id},
                                {"worker", e.elements[1].str},
                                {"idle_ms", e.elements[2].integer},
                                {"deliveries", e.elements[3].integer}});
    }
  }
  auto res = cmd({"XREVRANGE", keys.results, "+", "-", "COUNT", std::to_string(limit * 2)});
  if (!res.ok()) return report_error(app, res.error());
  for (const auto& e : res->elements) {
    if (e.elements.size() < 2) continue;
    const auto& kv = e.elements[1];
    const std::string status = field_of(kv, "status");
    json item = {{"id", field_of(kv, "id")},
                 {"entry", field_of(kv, "entry")},
                 {"worker", field_of(kv, "worker")},
                 {"deliveries", field_of(kv, "deliveries")}};
    if (status == "done") {
      if (out["done"].size() >= static_cast<size_t>(limit)) continue;
      item["out"] = field_of(kv, "out");
      json rep = json::parse(field_of(kv, "report"), nullptr, false);
      if (rep.is_object()) {
        item["frames"] = rep.value("frames", 0);
        item["wall_s"] = rep.value("wall_s", 0.0);
      }
      out["done"].push_back(item);
    } else if (status == "dead") {
      if (out["dead"].size() >= static_cast<size_t>(limit)) continue;
      item["exit_code"] = field_of(kv, "exit_code");
      item["error"] = field_of(kv, "error");
      out["dead"].push_back(item);
    }
  }
  if (json_out) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("pending %zu, running %zu, done %zu, dead %zu (at most %d each; newest first)\n",
              out["pending"].size(), out["running"].size(), out["done"].size(), out["dead"].size(),
              limit);
  for (const auto& j : out["pending"])
    std::printf("  pending  %-24s entry %s\n", j["id"].get<std::string>().c_str(),
                j["entry"].get<std::string>().c_str());
  for (const auto& j : out["running"])
    std::printf("  running  %-24s entry %s on %s, idle %lld ms, delivery %lld\n",
                j["id"].get<std::string>().c_str(), j["entry"].get<std::string>().c_str(),
                j["worker"].get<std::string>().c_str(),
                static_cast<long long>(j["idle_ms"].get<int64_t>()),
                static_cast<long long>(j["deliveries"].get<int64_t>()));
  for (const auto& j : out["done"])
    std::printf("  done     %-24s -> %s (%s)\n", j["id"].get<std::string>().c_str(),
                j["out"].get<std::string>().c_str(), j["worker"].get<std::string>().c_str());
  for (const auto& j : out["dead"])
    std::printf("  dead     %-24s exit %s: %s\n", j["id"].get<std::string>().c_str(),
                j["exit_code"].get<std::string>().c_str(), j["error"].get<std::string>().c_str());
  return 0;
}

}  // namespace tr::cli
