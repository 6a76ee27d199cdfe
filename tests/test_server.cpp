// `sailvl serve` over HTTP on loopback, driven with curl (a real client): answers streamed and
// not, an image data URL, a multi-turn conversation, hostile requests each with its status (the
// server healthy afterwards), 8 concurrent clients × 4 requests each getting its own answer, a
// client that disconnects mid-stream, SIGTERM during a stream.
#include <nlohmann/json.hpp>

#include <chrono>
#include <sstream>
#include <thread>

#include "tests/testutil.h"

using namespace sailvl;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A `sailvl serve` process on a free port; SIGTERM when destroyed.
struct Server {
  fs::path dir, log;
  int pid = 0, port = 0;
  explicit Server(const std::string& extra) {
    dir = test::temp_dir("serve");
    log = dir / "server.log";
    const fs::path pidf = dir / "pid";
    const std::string cmd = test::sailvl_binary() + " serve -m " + test::tiny_model("tiny-internvit").string() +
                            " --port 0 -c 1024 -n 8 " + extra + " > /dev/null 2> " + log.string() + " & echo $! > " +
                            pidf.string();
    test::run_command(cmd);
    pid = std::stoi(test::read_file(pidf));
    for (int i = 0; i < 600 && port == 0; ++i) {  // wait for "ready: ... http://127.0.0.1:PORT"
      const std::string l = test::read_file(log);
      const size_t at = l.find("ready:");
      if (at != std::string::npos) {
        const size_t colon = l.find("http://127.0.0.1:", at);
        port = std::stoi(l.substr(colon + 17));
      }
      if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (port == 0) ADD_FAILURE() << "the server did not start:\n" << test::read_file(log);
  }
  ~Server() {
    if (pid > 0) test::run_command("kill -TERM " + std::to_string(pid) + " 2>/dev/null; sleep 0.2");
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
  // POST a JSON body; returns the HTTP status and the body.
  int post(const std::string& path, const std::string& body, std::string* out, const std::string& headers = "") const {
    const fs::path f = dir / ("body-" + std::to_string(std::rand()));
    test::write_file(f, body);
    std::string resp;
    test::run_command("curl -s -w '\\n%{http_code}' " + headers +
                          " -H 'Content-Type: application/json' --data-binary @" + f.string() + " " + url(path),
                      &resp);
    fs::remove(f);
    const size_t nl = resp.find_last_of('\n');
    if (out) *out = resp.substr(0, nl);
    return std::atoi(resp.substr(nl + 1).c_str());
  }
  int get(const std::string& path, std::string* out) const {
    std::string resp;
    test::run_command("curl -s -w '\\n%{http_code}' " + url(path), &resp);
    const size_t nl = resp.find_last_of('\n');
    if (out) *out = resp.substr(0, nl);
    return std::atoi(resp.substr(nl + 1).c_str());
  }
};

json user(const std::string& text) { return {{"role", "user"}, {"content", text}}; }

std::string chat_body(const std::vector<json>& messages, int max_tokens = 8, bool stream = false) {
  return json{{"messages", json(messages)}, {"temperature", 0}, {"max_tokens", max_tokens}, {"stream", stream}}.dump();
}

// The content deltas of an SSE stream, joined; `done` whether it ended with [DONE].
std::string sse_text(const std::string& body, bool* done, json* last_usage = nullptr, std::string* finish = nullptr) {
  std::istringstream in(body);
  std::string line, text;
  *done = false;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string d = line.substr(6);
    if (d == "[DONE]") {
      *done = true;
      continue;
    }
    const json j = json::parse(d);
    if (j.contains("usage") && last_usage) *last_usage = j["usage"];
    if (!j.contains("choices") || j["choices"].empty()) continue;
    const json& c = j["choices"][0];
    if (c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
    if (finish && c.contains("finish_reason") && !c["finish_reason"].is_null()) *finish = c["finish_reason"];
  }
  return text;
}

}  // namespace

TEST(Serve, AnswersStreamedAndNotImagesAndConversations) {
  Server s("--parallel 2 --max-tiles 2");
  std::string out;
  ASSERT_EQ(s.get("/health", &out), 200) << out;
  ASSERT_EQ(s.get("/v1/models", &out), 200);
  EXPECT_EQ(json::parse(out)["data"][0]["id"], "tiny-internvit");

  ASSERT_EQ(s.post("/v1/chat/completions", chat_body({user("Hello, who are you?")}), &out), 200) << out;
  const json r = json::parse(out);
  const std::string text = r["choices"][0]["message"]["content"];
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["completion_tokens"], 8);
  EXPECT_EQ(r["usage"]["total_tokens"].get<int>(), r["usage"]["prompt_tokens"].get<int>() + 8);

  // The same request streamed: the same text, then a finish reason, the usage and [DONE].
  const std::string body = json{{"messages", json::array({user("Hello, who are you?")})},
                                {"temperature", 0},
                                {"max_tokens", 8},
                                {"stream", true},
                                {"stream_options", {{"include_usage", true}}}}
                               .dump();
  ASSERT_EQ(s.post("/v1/chat/completions", body, &out), 200);
  bool done = false;
  json usage;
  std::string finish;
  const std::string streamed = sse_text(out, &done, &usage, &finish);
  EXPECT_TRUE(done) << out;
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(usage["completion_tokens"], 8);
  EXPECT_EQ(streamed.substr(streamed.find_first_not_of(' ')), text);

  // An image as a data URL, then a second turn about it.
  const std::string png = test::read_file(test::data_path("images/chat/a.png"));
  const json img_msg = {
      {"role", "user"},
      {"content",
       {{{"type", "text"}, {"text", "Describe the image."}},
        {{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64," + test::base64(png)}}}}}}};
  ASSERT_EQ(s.post("/v1/chat/completions", chat_body({img_msg}), &out), 200) << out;
  const json r1 = json::parse(out);
  EXPECT_GT(r1["usage"]["prompt_tokens"].get<int>(), 256) << "the image's 256 rows are in the prompt";
  const std::vector<json> turn2 = {
      img_msg, {{"role", "assistant"}, {"content", r1["choices"][0]["message"]["content"]}}, user("What colours?")};
  ASSERT_EQ(s.post("/v1/chat/completions", chat_body(turn2), &out), 200) << out;
  const json r2 = json::parse(out);
  EXPECT_GT(r2["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 256)
      << "the conversation's prefix (with the image rows) came from the slot's cache";
}

TEST(Serve, HostileRequestsGetTheirStatusAndTheServerKeepsServing) {
  const fs::path files = test::temp_dir("serve-files");
  Server s("--parallel 2 --max-tiles 2 --api-key k3y --max-body 1 --max-images 2 --allow-files " + files.string());
  const std::string key = "-H 'Authorization: Bearer k3y'";
  const std::string junk_b64 = "data:image/png;base64," + test::base64("this is not an image at all");
  auto img = [](const std::string& url) {
    return json{
        {"role", "user"},
        {"content", {{{"type", "text"}, {"text", "x"}}, {{"type", "image_url"}, {"image_url", {{"url", url}}}}}}};
  };
  struct Case {
    const char* what;
    std::string body;
    int status;
    std::string headers;
  };
  const std::vector<Case> cases = {
      {"malformed JSON", "{\"messages\": [", 400, key},
      {"not an object", "[1, 2]", 400, key},
      {"no messages", "{}", 400, key},
      {"empty messages", R"({"messages": []})", 400, key},
      {"unknown role", R"({"messages": [{"role": "bot", "content": "hi"}]})", 400, key},
      {"content of the wrong type", R"({"messages": [{"role": "user", "content": 42}]})", 400, key},
      {"ends with the assistant",
       R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})", 400, key},
      {"bad base64", json{{"messages", json::array({img("data:image/png;base64,@@@@")})}}.dump(), 400, key},
      {"undecodable image", json{{"messages", json::array({img(junk_b64)})}}.dump(), 400, key},
      {"remote URL", json{{"messages", json::array({img("https://example.invalid/cat.png")})}}.dump(), 400, key},
      {"file outside --allow-files", json{{"messages", json::array({img("file:///etc/passwd")})}}.dump(), 400, key},
      {"three images over a limit of two",
       json{{"messages",
             {{{"role", "user"},
               {"content",
                {{{"type", "image_url"}, {"image_url", {{"url", junk_b64}}}},
                 {{"type", "image_url"}, {"image_url", {{"url", junk_b64}}}},
                 {{"type", "image_url"}, {"image_url", {{"url", junk_b64}}}}}}}}}}
           .dump(),
       400, key},
      {"n = 2", R"({"messages": [{"role": "user", "content": "a"}], "n": 2})", 400, key},
      {"temperature a string", R"({"messages": [{"role": "user", "content": "a"}], "temperature": "hot"})", 400, key},
      {"top_p 2", R"({"messages": [{"role": "user", "content": "a"}], "top_p": 2})", 400, key},
      {"negative max_tokens", R"({"messages": [{"role": "user", "content": "a"}], "max_tokens": -5})", 400, key},
      {"five stop strings", R"({"messages": [{"role": "user", "content": "a"}], "stop": ["a","b","c","d","e"]})", 400,
       key},
      {"no API key", chat_body({user("hi")}), 401, ""},
      {"a wrong API key", chat_body({user("hi")}), 401, "-H 'Authorization: Bearer nope'"},
      {"a body over 1 MiB", R"({"messages": [{"role": "user", "content": ")" + std::string(2 << 20, 'a') + "\"}]}", 413,
       key},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string out;
    EXPECT_EQ(s.post("/v1/chat/completions", c.body, &out, c.headers), c.status) << out;
    if (c.status != 413 || !out.empty()) {
      const json e = json::parse(out);
      EXPECT_TRUE(e["error"]["message"].is_string()) << out;
      EXPECT_TRUE(e["error"].contains("type") && e["error"].contains("param") && e["error"].contains("code")) << out;
    }
  }
  std::string out;
  EXPECT_EQ(s.get("/nope", &out), 404);
  EXPECT_EQ(s.get("/health", &out), 200) << "the server must keep serving";
  // A file under --allow-files works; and a normal request still gets its answer.
  fs::copy_file(test::data_path("images/chat/a.png"), files / "a.png");
  EXPECT_EQ(s.post("/v1/chat/completions", chat_body({img("file://" + (files / "a.png").string())}, 2), &out, key), 200)
      << out;
  EXPECT_EQ(s.post("/v1/chat/completions", chat_body({user("Hello")}, 2), &out, key), 200) << out;
  ASSERT_EQ(s.get("/metrics", &out), 200);
  EXPECT_NE(out.find("sailvl_requests_total{status=\"400\"} 17"), std::string::npos) << out;
  EXPECT_NE(out.find("sailvl_requests_total{status=\"401\"} 2"), std::string::npos) << out;
}

// 8 clients × 4 requests at once over 4 slots: every answer is its own (the same as served alone).
TEST(Serve, ConcurrentClientsGetTheirOwnAnswers) {
  Server s("--parallel 4 --max-queue 64");
  const int clients = 8, per_client = 4;
  std::vector<std::string> want(clients * per_client);
  for (int i = 0; i < clients * per_client; ++i) {
    std::string out;
    ASSERT_EQ(s.post("/v1/chat/completions", chat_body({user("Question number " + std::to_string(i))}, 6), &out), 200);
    want[i] = json::parse(out)["choices"][0]["message"]["content"];
  }
  // Each client: a shell loop of 4 sequential curls, the 8 clients in parallel.
  const fs::path dir = test::temp_dir("clients");
  std::string script;
  for (int c = 0; c < clients; ++c) {
    script += "( ";
    for (int k = 0; k < per_client; ++k) {
      const int i = c * per_client + k;
      test::write_file(dir / ("q" + std::to_string(i)), chat_body({user("Question number " + std::to_string(i))}, 6));
      script += "curl -s -H 'Content-Type: application/json' --data-binary @" +
                (dir / ("q" + std::to_string(i))).string() + " " + s.url("/v1/chat/completions") + " > " +
                (dir / ("a" + std::to_string(i))).string() + "; ";
    }
    script += ") & ";
  }
  script += "wait";
  test::run_command(script);
  for (int i = 0; i < clients * per_client; ++i) {
    SCOPED_TRACE(i);
    const json r = json::parse(test::read_file(dir / ("a" + std::to_string(i))));
    EXPECT_EQ(r["choices"][0]["message"]["content"], want[i]);
  }
  std::string m;
  ASSERT_EQ(s.get("/metrics", &m), 200);
  // The decode steps advanced more sequences than steps: requests were batched.
  auto value = [&m](const std::string& name) {
    const size_t at = m.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(m.substr(at + name.size() + 2));
  };
  EXPECT_GT(value("sailvl_decode_rows_total"), value("sailvl_decode_steps_total"));
}

TEST(Serve, ADisconnectedStreamFreesItsSlotAndSigtermEndsStreamsCleanly) {
  Server s("--parallel 1 --grace 2");
  // A long streamed answer, abandoned after 1 s.
  const fs::path body = s.dir / "long.json";
  test::write_file(body, chat_body({user("Tell me everything.")}, 100000, true));
  test::run_command("curl -s -N --max-time 1 --data-binary @" + body.string() + " " + s.url("/v1/chat/completions") +
                    " > /dev/null");
  std::string m;
  bool freed = false;
  for (int i = 0; i < 100 && !freed; ++i) {
    s.get("/metrics", &m);
    freed = m.find("\nsailvl_active_slots 0") != std::string::npos;
    if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(freed) << "the abandoned stream still holds its slot:\n" << m;
  std::string out;
  EXPECT_EQ(s.post("/v1/chat/completions", chat_body({user("hi")}, 2), &out), 200) << "the slot was not reusable";

  // SIGTERM while a stream runs: the stream ends with [DONE], the server exits 0.
  const fs::path stream_out = s.dir / "stream.txt", rc = s.dir / "rc";
  test::write_file(body, chat_body({user("Tell me everything.")}, 3000, true));
  const std::string cmd = "( curl -s -N --data-binary @" + body.string() + " " + s.url("/v1/chat/completions") + " > " +
                          stream_out.string() + " & c=$!; for i in $(seq 100); do [ -s " + stream_out.string() +
                          " ] && break; sleep 0.1; done; kill -TERM " + std::to_string(s.pid) +
                          "; for i in $(seq 300); do kill -0 " + std::to_string(s.pid) +
                          " 2>/dev/null || break; sleep 0.1; done; wait $c; echo done )";
  test::run_command(cmd);
  bool done = false;
  sse_text(test::read_file(stream_out), &done);
  EXPECT_TRUE(done) << test::read_file(stream_out).substr(0, 500);
  EXPECT_NE(test::read_file(s.log).find("sailvl serve: stopped"), std::string::npos) << test::read_file(s.log);
  EXPECT_NE(test::run_command("kill -0 " + std::to_string(s.pid) + " 2>/dev/null"), 0) << "the server is still running";
  s.pid = 0;
}
