// The session engine (runtime/session.h) on the tiny models, CPU:
//   - a 3-turn conversation about an image gives the tokens and logits of recomputing every turn
//     from scratch (runtime::generate on the whole re-rendered prompt), step by step under teacher
//     forcing, on every step whose reference top-2 margin is clear of the tolerance;
//   - follow-up turns prefill only the new text and do no vision work (counted, not timed); an
//     image sent again costs nothing; the image cache evicts by bytes;
//   - cancellation from another thread during vision and during prefill stops the stage early,
//     leaves the conversation as it was, and the session answers the same afterwards;
//   - a failing turn (prompt over the context, wrong marker count) leaves the conversation intact.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "image/image.h"
#include "ops/ops.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "tests/testutil.h"

namespace sailvl {
namespace {

constexpr double kLogitsAtol = 3e-5, kLogitsRtol = 1e-5;  // tests/data/README.md, CPU vs the F32 oracle

runtime::ImageInput chat_image(const std::string& name) {
  return runtime::ImageInput::from_file(test::data_path("images/chat/" + name).string());
}

// All pixels of the conversation's images, as the session makes them (BF16 tiles, max 2 tiles).
Tensor pixels_of(const std::vector<runtime::ImageInput>& images, int64_t max_tiles) {
  if (images.empty()) return {};
  std::vector<image::RgbImage> rgb;
  for (const auto& i : images) rgb.push_back(*i.rgb);
  image::PreprocessOptions p;
  p.max_tiles = max_tiles;
  p.dtype = DType::BF16;
  return image::preprocess_decoded(rgb, p).pixels;
}

struct StepLog {
  std::vector<std::vector<float>> logits;  // per decode step
  void hook(runtime::GenerationOptions& g) {
    g.on_logits = [this](int64_t, const Tensor& l) { logits.push_back(l.to_floats()); };
  }
};

double top2_margin(const std::vector<float>& l, int64_t allowed) {
  float a = -1e30f, b = -1e30f;
  for (int64_t i = 0; i < allowed; ++i) {
    if (i == 151667) continue;  // <IMG_CONTEXT> is never sampled
    if (l[i] > a)
      b = a, a = l[i];
    else if (l[i] > b)
      b = l[i];
  }
  return a - b;
}

class SessionCpu : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { ops::set_num_threads(2); }
};

// Three turns (image + question, two follow-ups) against recomputing each turn from scratch.
TEST_P(SessionCpu, ThreeTurnsEqualRecomputingEveryTurn) {
  const model::SailVL& m = test::golden_sailvl(GetParam());
  runtime::SessionOptions so;
  so.preprocess.max_tiles = 2;
  so.prefill_chunk = 64;  // several chunks per turn, so chunk boundaries are exercised too
  runtime::Session s(m, so);
  const std::vector<std::pair<std::string, bool>> turns = {
      {"Please describe the image shortly.", true}, {"What colour is the disc?", false}, {"And the band?", false}};
  const int64_t allowed = m.tokenizer().size();
  int64_t compared = 0, skipped = 0;
  for (size_t t = 0; t < turns.size(); ++t) {
    SCOPED_TRACE("turn " + std::to_string(t + 1));
    std::vector<runtime::ImageInput> imgs;
    if (turns[t].second) imgs.push_back(chat_image("a.png"));
    // From scratch: the whole prompt as chat() renders it, a fresh KV cache, all images encoded.
    const runtime::ChatPrompt prompt = s.render(turns[t].first, imgs);
    const std::vector<int64_t> ids(prompt.ids.begin(), prompt.ids.end());
    std::vector<runtime::ImageInput> all = s.images();
    all.insert(all.end(), imgs.begin(), imgs.end());
    runtime::GenerationOptions g;
    g.max_new_tokens = 12;
    StepLog ref_log;
    ref_log.hook(g);
    const runtime::GenerationResult ref = runtime::generate(m, ids, pixels_of(all, 2), g);
    // The engine, teacher-forced on the reference's tokens so every step sees the same context.
    runtime::GenerationOptions ge = g;
    StepLog got_log;
    got_log.hook(ge);
    ge.forced = &ref.tokens;
    const runtime::TurnResult r = s.ask(turns[t].first, imgs, ge);
    ASSERT_TRUE(r.kept);
    ASSERT_EQ(got_log.logits.size(), ref_log.logits.size());
    for (size_t i = 0; i < ref_log.logits.size(); ++i) {
      const Tensor a = Tensor::from_floats(got_log.logits[i], {allowed > 0 ? int64_t(got_log.logits[i].size()) : 0});
      const Tensor b = Tensor::from_floats(ref_log.logits[i], {int64_t(ref_log.logits[i].size())});
      EXPECT_CLOSE(a, b, kLogitsAtol, kLogitsRtol) << "logits of step " << i;
      if (top2_margin(ref_log.logits[i], allowed) <= 2 * (kLogitsAtol + kLogitsRtol)) {
        ++skipped;
        continue;
      }
      ++compared;
      EXPECT_EQ(r.generation.tokens[i], ref.tokens[i]) << "greedy step " << i;
    }
    // What the turn recomputed: everything on turn 1, only the new text afterwards.
    if (t == 0) {
      EXPECT_EQ(r.generation.timings.cached_tokens, 0);
      EXPECT_EQ(r.generation.timings.encoded_tiles, 1);
    } else {
      EXPECT_EQ(r.generation.timings.encoded_tiles, 0) << "the image must come from the cache";
      const int64_t fresh = r.generation.timings.prompt_tokens - r.generation.timings.cached_tokens;
      EXPECT_LT(fresh, r.generation.timings.prompt_tokens / 10) << "only the new text is prefilled";
      EXPECT_GT(r.generation.timings.cached_tokens, 256) << "the image rows stay in the cache";
    }
  }
  EXPECT_EQ(s.vision_passes(), 1);
  EXPECT_EQ(s.history().size(), 3u);
  EXPECT_GE(compared, 30) << skipped << " near-ties skipped";
}

INSTANTIATE_TEST_SUITE_P(Tiny, SessionCpu, ::testing::Values("tiny-internvit", "tiny-aimv2"), [](const auto& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

TEST(Session, SameImageAgainCostsNoVisionWork) {
  const model::SailVL& m = test::golden_sailvl("tiny-aimv2");
  runtime::SessionOptions so;
  so.preprocess.max_tiles = 2;
  runtime::Session s(m, so);
  runtime::GenerationOptions g;
  g.max_new_tokens = 2;
  s.ask("Describe it.", {chat_image("b.png")}, g);
  EXPECT_EQ(s.vision_passes(), 1);
  s.reset();  // a new conversation keeps the image cache
  const runtime::TurnResult r = s.ask("Describe it again.", {chat_image("b.png")}, g);
  EXPECT_EQ(s.vision_passes(), 1);
  EXPECT_EQ(r.generation.timings.encoded_tiles, 0);
  EXPECT_EQ(r.generation.timings.image_tiles, 3);  // (1, 2) grid + thumbnail
  // The same picture tiled another way is another entry.
  runtime::ImageInput one = chat_image("b.png");
  one.max_tiles = 1;
  s.reset();
  s.ask("Once more.", {one}, g);
  EXPECT_EQ(s.vision_passes(), 2);
  EXPECT_EQ(s.image_cache().entries(), 2u);
}

TEST(Session, FailedTurnLeavesTheConversationIntact) {
  const model::SailVL& m = test::golden_sailvl("tiny-internvit");
  runtime::SessionOptions so;
  so.context = 400;
  so.preprocess.max_tiles = 2;
  runtime::Session s(m, so);
  runtime::GenerationOptions g;
  g.max_new_tokens = 3;
  const runtime::TurnResult first = s.ask("Hello!", {}, g);
  ASSERT_TRUE(first.kept);
  // b.png is 3 tiles = 768 image tokens: the prompt does not fit 400 tokens.
  try {
    s.ask("Look at this.", {chat_image("b.png")}, g);
    FAIL() << "no ContextOverflow";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::ContextOverflow);
    EXPECT_NE(std::string(e.what()).find("400"), std::string::npos) << e.what();
  }
  // Two markers for one image.
  EXPECT_THROW(s.ask("<image> and <image>", {chat_image("a.png")}, g), Error);
  EXPECT_EQ(s.history().size(), 1u);
  EXPECT_TRUE(s.images().empty());
  const runtime::TurnResult second = s.ask("How are you?", {}, g);
  EXPECT_TRUE(second.kept);
  EXPECT_EQ(s.history().size(), 2u);
  EXPECT_GT(second.generation.timings.cached_tokens, 30);
}

// A cancel flag set by another thread while a stage runs: the progress callback hands control to
// that thread and waits until it has set the flag, so "during" is exact, not a race.
struct CancelFromThread {
  std::atomic<bool> flag{false};
  std::mutex mu;
  std::condition_variable cv;
  bool asked = false;
  std::thread t;
  CancelFromThread()
      : t([this] {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [this] { return asked; });
          flag = true;
          cv.notify_all();
        }) {}
  ~CancelFromThread() {
    {
      std::lock_guard<std::mutex> lock(mu);
      asked = true;
    }
    cv.notify_all();
    t.join();
  }
  void cancel_now() {  // called on the computing thread: returns once the other thread set the flag
    std::unique_lock<std::mutex> lock(mu);
    asked = true;
    cv.notify_all();
    cv.wait(lock, [this] { return flag.load(); });
  }
};

TEST(Session, CancelDuringVisionAndPrefillStopsEarlyAndKeepsTheSession) {
  const model::SailVL& m = test::golden_sailvl("tiny-aimv2");
  runtime::SessionOptions so;
  so.preprocess.max_tiles = 2;
  so.prefill_chunk = 16;
  runtime::Session s(m, so);
  runtime::GenerationOptions g;
  g.max_new_tokens = 4;

  // Vision: cancel after the first layer of the tower.
  {
    CancelFromThread c;
    int64_t layers_done = 0, layers_total = 0;
    runtime::GenerationOptions gc = g;
    gc.cancel = &c.flag;
    gc.progress = [&](runtime::Phase ph, int64_t done, int64_t total) {
      if (ph != runtime::Phase::Vision) return;
      layers_done = done;
      layers_total = total;
      if (done == 1) c.cancel_now();
    };
    try {
      s.ask("Describe it.", {chat_image("b.png")}, gc);
      FAIL() << "not cancelled";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Cancelled);
    }
    EXPECT_EQ(layers_done, 1);
    EXPECT_GT(layers_total, layers_done) << "the tower stopped before its last layer";
    EXPECT_TRUE(s.history().empty());
  }
  // Prefill: cancel after the first chunk.
  {
    CancelFromThread c;
    int64_t chunks = 0, done_tokens = 0, total_tokens = 0;
    runtime::GenerationOptions gc = g;
    gc.cancel = &c.flag;
    gc.progress = [&](runtime::Phase ph, int64_t done, int64_t total) {
      if (ph != runtime::Phase::Prefill) return;
      ++chunks;
      done_tokens = done;
      total_tokens = total;
      if (chunks == 1) c.cancel_now();
    };
    try {
      s.ask("Tell me a long story about the sea and the sky.", {}, gc);
      FAIL() << "not cancelled";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Cancelled);
    }
    EXPECT_EQ(chunks, 1);
    EXPECT_LT(done_tokens, total_tokens) << "the prefill stopped before the last chunk";
    EXPECT_TRUE(s.history().empty());
  }
  // The session still answers exactly as a fresh one does.
  const runtime::TurnResult r = s.ask("Describe it.", {chat_image("b.png")}, g);
  runtime::Session fresh(m, so);
  const runtime::TurnResult f = fresh.ask("Describe it.", {chat_image("b.png")}, g);
  EXPECT_EQ(r.generation.tokens, f.generation.tokens);
  EXPECT_EQ(s.history().size(), 1u);
}

TEST(Session, CancelDuringDecodeDropsTheTurn) {
  const model::SailVL& m = test::golden_sailvl("tiny-internvit");
  runtime::Session s(m);
  std::atomic<bool> flag{false};
  runtime::GenerationOptions g;
  g.max_new_tokens = 20;
  g.cancel = &flag;
  g.on_token = [&](int64_t, const std::string&) { flag = true; };  // after the first token
  const runtime::TurnResult r = s.ask("Hi", {}, g);
  EXPECT_EQ(r.generation.stop, runtime::StopReason::Cancelled);
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.generation.tokens.size(), 1u);
  EXPECT_TRUE(s.history().empty());
}

TEST(ImageCache, EvictsLeastRecentlyUsedByBytes) {
  runtime::ImageCache c(3 * 1024);
  auto t = [] { return Tensor::zeros({256}, DType::F32); };  // 1 KiB each
  c.insert({"a"}, t());
  c.insert({"b"}, t());
  c.insert({"c"}, t());
  ASSERT_TRUE(c.find({"a"}).has_value());  // a is now the most recent
  c.insert({"d"}, t());                    // evicts b, the least recently used
  EXPECT_FALSE(c.find({"b"}).has_value());
  EXPECT_TRUE(c.find({"a"}).has_value());
  EXPECT_TRUE(c.find({"c"}).has_value());
  EXPECT_TRUE(c.find({"d"}).has_value());
  EXPECT_EQ(c.bytes(), 3u * 1024);
  c.insert({"big"}, Tensor::zeros({2048}, DType::F32));  // larger than the bound: not kept
  EXPECT_FALSE(c.find({"big"}).has_value());
  EXPECT_EQ(c.entries(), 3u);
}

}  // namespace
}  // namespace sailvl
