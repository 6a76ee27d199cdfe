// The continuous-batching scheduler (runtime/scheduler.h) on the tiny models, CPU:
//   - requests served together give the greedy tokens they get served alone, on every step whose
//     top-2 margin (served alone) is clear of the tolerance, under teacher forcing;
//   - a conversation continued in a later request reuses its slot's cached prefix;
//   - a cancelled stream frees its slot; a full queue refuses; a failing request ends alone;
//   - the server's request path renders the same ids as `sailvl chat` for the same conversation.
#include <gtest/gtest.h>

#include <thread>

#include "ops/ops.h"
#include "runtime/chat.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "server/request.h"
#include "tests/testutil.h"

namespace sailvl {
namespace {

constexpr double kLogitsAtol = 3e-5, kLogitsRtol = 1e-5;

runtime::Job text_job(const model::SailVL& m, const std::string& question, int64_t max_new,
                      const std::vector<runtime::ChatTurn>& history = {}) {
  runtime::ChatRequest req;
  req.question = question;
  req.history = history;
  std::vector<runtime::ImageInput> none;
  runtime::PreparedPrompt p = runtime::prepare_prompt(m, req, none, {});
  runtime::Job j;
  j.ids = p.ids;
  j.tags = p.tags;
  j.gen.max_new_tokens = max_new;
  return j;
}

runtime::GenerationResult finish(const std::shared_ptr<runtime::Stream>& s) {
  std::string t;
  while (s->wait_text(t)) {
  }
  if (s->error()) ADD_FAILURE() << s->error()->what();
  return s->result();
}

double top2_margin(const std::vector<float>& l) {
  float a = -1e30f, b = -1e30f;
  for (size_t i = 0; i < 151674; ++i) {
    if (i == 151667) continue;
    if (l[i] > a)
      b = a, a = l[i];
    else if (l[i] > b)
      b = l[i];
  }
  return a - b;
}

TEST(Scheduler, BatchedRequestsEqualRequestsServedAlone) {
  ops::set_num_threads(2);
  const model::SailVL& m = test::golden_sailvl("tiny-aimv2");
  const std::vector<std::string> questions = {"Hello, who are you?", "Tell me about the sea.", "What is two plus two?",
                                              "Name a colour.",      "Write a haiku.",         "Why is the sky blue?"};
  // Alone: one slot, one request at a time; logits recorded for the margins.
  std::vector<std::vector<int64_t>> alone_tokens;
  std::vector<std::vector<double>> margins;
  for (const auto& q : questions) {
    runtime::GenerationOptions g;
    g.max_new_tokens = 10;
    std::vector<double> mg;
    g.on_logits = [&mg](int64_t, const Tensor& l) { mg.push_back(top2_margin(l.to_floats())); };
    runtime::ChatRequest req;
    req.question = q;
    std::vector<runtime::ImageInput> none;
    const auto p = runtime::prepare_prompt(m, req, none, {});
    const runtime::GenerationResult r = runtime::generate(m, p.ids, Tensor(), g);
    alone_tokens.push_back(r.tokens);
    margins.push_back(mg);
  }
  // Together: 6 requests over 4 slots (more than the slots: admission while others decode),
  // teacher-forced on the alone tokens so every step sees the same context.
  runtime::SchedulerOptions so;
  so.slots = 4;
  so.context = 512;
  so.prefill_budget = 16;
  runtime::Scheduler sched(m, so);
  std::vector<std::shared_ptr<runtime::Stream>> streams;
  for (size_t i = 0; i < questions.size(); ++i) {
    runtime::Job j = text_job(m, questions[i], 10);
    j.gen.forced = &alone_tokens[i];
    streams.push_back(sched.submit(std::move(j)));
    ASSERT_TRUE(streams.back());
  }
  int compared = 0;
  for (size_t i = 0; i < questions.size(); ++i) {
    const runtime::GenerationResult r = finish(streams[i]);
    ASSERT_EQ(r.tokens.size(), alone_tokens[i].size()) << questions[i];
    for (size_t t = 0; t < r.tokens.size(); ++t) {
      if (margins[i][t] <= 2 * (kLogitsAtol + kLogitsRtol)) continue;
      ++compared;
      EXPECT_EQ(r.tokens[t], alone_tokens[i][t]) << questions[i] << " step " << t;
    }
  }
  EXPECT_GE(compared, 50);
  const runtime::SchedulerStats st = sched.stats();
  EXPECT_GT(st.batched_rows, st.decode_steps) << "no decode step ran more than one sequence";
}

TEST(Scheduler, AContinuedConversationReusesItsSlot) {
  const model::SailVL& m = test::golden_sailvl("tiny-internvit");
  runtime::SchedulerOptions so;
  so.slots = 2;
  so.context = 512;
  runtime::Scheduler sched(m, so);
  const runtime::GenerationResult first = finish(sched.submit(text_job(m, "Hello!", 4)));
  std::vector<tokenizer::TokenId> toks(first.tokens.begin(), first.tokens.end());
  const std::string answer = runtime::clean_response(m.tokenizer().decode(toks, true));
  runtime::Job next = text_job(m, "And then?", 4, {{"Hello!", answer}});
  const int64_t prompt = static_cast<int64_t>(next.ids.size());
  const runtime::GenerationResult second = finish(sched.submit(std::move(next)));
  EXPECT_GT(second.timings.cached_tokens, prompt / 2) << "the second request did not reuse the first one's slot";
}

TEST(Scheduler, CancelFreesTheSlotQueueFullRefusesAndAFailureEndsAlone) {
  const model::SailVL& m = test::golden_sailvl("tiny-internvit");
  runtime::SchedulerOptions so;
  so.slots = 1;
  so.context = 512;
  so.max_queue = 1;
  runtime::Scheduler sched(m, so);
  auto a = sched.submit(text_job(m, "A long answer please.", 200));
  ASSERT_TRUE(a);
  std::string t;
  a->wait_text(t, std::chrono::milliseconds(2000));  // running
  auto b = sched.submit(text_job(m, "Queued.", 2));  // waits for the one slot
  ASSERT_TRUE(b);
  EXPECT_FALSE(sched.submit(text_job(m, "Too many.", 2))) << "the queue holds one request";
  a->cancel();
  const runtime::GenerationResult ra = finish(a);
  EXPECT_EQ(ra.stop, runtime::StopReason::Cancelled);
  EXPECT_LT(ra.tokens.size(), 200u);
  const runtime::GenerationResult rb = finish(b);  // got the slot
  EXPECT_EQ(rb.tokens.size(), 2u);
  // A request whose prompt does not fit a slot fails alone; the scheduler keeps serving.
  std::string words;
  for (int i = 0; i < 1000; ++i) words += " word";  // ~1000 tokens
  runtime::Job huge = text_job(m, words, 2);
  auto c = sched.submit(std::move(huge));
  std::string x;
  while (c->wait_text(x)) {
  }
  ASSERT_TRUE(c->error().has_value());
  EXPECT_EQ(c->error()->kind(), ErrorKind::ContextOverflow);
  EXPECT_EQ(finish(sched.submit(text_job(m, "Still there?", 2))).tokens.size(), 2u);
}

// The server's request path and `sailvl chat` render the same conversation to the same ids.
TEST(Scheduler, ServerRequestRendersLikeTheChat) {
  const model::SailVL& m = test::golden_sailvl("tiny-internvit");
  runtime::SessionOptions so;
  so.preprocess.max_tiles = 2;
  runtime::Session chat(m, so);
  runtime::GenerationOptions g;
  g.max_new_tokens = 3;
  const auto a = runtime::ImageInput::from_file(test::data_path("images/chat/a.png").string());
  const auto b = runtime::ImageInput::from_file(test::data_path("images/chat/b.png").string());
  const runtime::TurnResult t1 = chat.ask("What is this?", {a}, g);
  const runtime::TurnResult t2 = chat.ask("Thanks.", {}, g);
  const runtime::ChatPrompt want = chat.render("And this one?", {b});

  auto data_url = [](const std::string& path) {
    return "data:image/png;base64," + test::base64(test::read_file(path));
  };
  nlohmann::json body = {
      {"messages",
       {{{"role", "user"},
         {"content",
          {{{"type", "text"}, {"text", "What is this?"}},
           {{"type", "image_url"},
            {"image_url", {{"url", data_url(test::data_path("images/chat/a.png").string())}}}}}}},
        {{"role", "assistant"}, {"content", t1.response}},
        {{"role", "user"}, {"content", "Thanks."}},
        {{"role", "assistant"}, {"content", t2.response}},
        {{"role", "user"},
         {"content",
          {{{"type", "image_url"}, {"image_url", {{"url", data_url(test::data_path("images/chat/b.png").string())}}}},
           {{"type", "text"}, {"text", "And this one?"}}}}}}},
      {"max_tiles", 2}};
  server::Limits lim;
  server::ChatCompletion c = server::parse_chat_completion(body.dump(), lim, 16);
  const runtime::Job job = server::make_job(m, c, 4096);
  EXPECT_EQ(job.ids, std::vector<int64_t>(want.ids.begin(), want.ids.end()));
}

}  // namespace
}  // namespace sailvl
