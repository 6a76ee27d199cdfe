// Byte-pair encoding of one pre-tokenized piece (Sennrich et al. 2016; GPT-2's byte-level variant).
//
// Start: one symbol per byte (its id is the vocabulary entry of the byte's GPT-2 spelling).
// Step: among all adjacent symbol pairs that appear in merges.txt, merge the one of lowest rank;
// ties (the same pair twice) go to the leftmost. Stop when no adjacent pair has a rank.
//
// Two implementations with identical results:
//   short pieces (the common case): a vector scanned for the best pair each step, O(n^2) but tiny n;
//   long pieces: a doubly linked list of symbols plus a min-heap of candidate pairs keyed by
//   (rank, left position), like Hugging Face tokenizers' models/bpe/word.rs. A heap entry is
//   stale when its left symbol was merged away or its right neighbour changed; it is then skipped.
//   Each merge removes one symbol and pushes at most two pairs: O(n log n) overall, so a 1 MB run
//   of one character is fast.
#include <algorithm>
#include <functional>

#include "tensor/error.h"
#include "tokenizer/tokenizer_internal.h"

namespace sailvl::tokenizer {

static const Merge* find_merge(const Tokenizer::Impl& t, TokenId a, TokenId b) { return t.merges.find(a, b); }

static constexpr size_t kShortPiece = 32;

static void bpe_short(const Tokenizer::Impl& t, std::string_view piece, std::vector<TokenId>& out) {
  TokenId syms[kShortPiece];
  size_t n = piece.size();
  for (size_t i = 0; i < n; ++i) syms[i] = t.byte_id[static_cast<unsigned char>(piece[i])];
  while (n > 1) {
    int32_t best_rank = INT32_MAX;
    size_t best = 0;
    TokenId merged = -1;
    for (size_t i = 0; i + 1 < n; ++i) {
      const Merge* m = find_merge(t, syms[i], syms[i + 1]);
      if (m && m->rank < best_rank) {  // strict '<' keeps the leftmost of equal ranks
        best_rank = m->rank;
        best = i;
        merged = m->merged;
      }
    }
    if (merged < 0) break;
    syms[best] = merged;
    for (size_t i = best + 1; i + 1 < n; ++i) syms[i] = syms[i + 1];
    --n;
  }
  out.insert(out.end(), syms, syms + n);
}

namespace {
struct Symbol {
  TokenId id;
  int64_t prev, next;  // neighbours in the list; -1 at the ends
  bool alive;
};
// A heap entry packed as (rank << 32) | left position, so the smallest key is the lowest rank and,
// among equal ranks, the leftmost pair. A rank names one pair, so an entry is current exactly when
// the pair now at `left` has that rank.
inline uint64_t candidate(int32_t rank, int64_t left) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(rank)) << 32) | static_cast<uint64_t>(left);
}
}  // namespace

static void bpe_heap(const Tokenizer::Impl& t, std::string_view piece, std::vector<TokenId>& out) {
  const int64_t n = static_cast<int64_t>(piece.size());
  SAILVL_CHECK(n < (int64_t{1} << 32), BadTokenizer, "a single pre-tokenized piece of ", n,
               " bytes is too long (the limit is 4 GiB)");
  std::vector<Symbol> sym(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    sym[i] = {t.byte_id[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1, true};

  std::vector<uint64_t> heap;  // a min-heap through std::greater
  heap.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i + 1 < n; ++i)
    if (const Merge* m = find_merge(t, sym[i].id, sym[i + 1].id)) heap.push_back(candidate(m->rank, i));
  std::make_heap(heap.begin(), heap.end(), std::greater<>());  // O(n) build
  auto push_pair = [&](int64_t left) {
    if (left < 0 || sym[left].next < 0) return;
    if (const Merge* m = find_merge(t, sym[left].id, sym[sym[left].next].id)) {
      heap.push_back(candidate(m->rank, left));
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t c = heap.back();
    heap.pop_back();
    const int32_t rank = static_cast<int32_t>(c >> 32);
    const int64_t left = static_cast<int64_t>(c & 0xFFFFFFFFu);
    Symbol& l = sym[left];
    if (!l.alive || l.next < 0) continue;
    const Merge* m = find_merge(t, l.id, sym[l.next].id);
    if (!m || m->rank != rank) continue;  // stale: the pair here changed since it was pushed
    Symbol& r = sym[l.next];
    l.id = m->merged;  // left absorbs right
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = left;
    push_pair(l.prev);
    push_pair(left);
  }
  for (int64_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

void bpe_merge(const Tokenizer::Impl& t, std::string_view piece, std::vector<TokenId>& out) {
  if (piece.empty()) return;
  if (t.ignore_merges) {
    if (auto it = t.vocab.find(std::string(piece)); it != t.vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (piece.size() <= kShortPiece)
    bpe_short(t, piece, out);
  else
    bpe_heap(t, piece, out);
}

}  // namespace sailvl::tokenizer
