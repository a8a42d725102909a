// Device memory and the access checker of the CUDA simulator.
//
// The access checker (kernel sources compiled with -fsanitize=thread,
// which makes the compiler call __tsan_read4(address) and friends around
// every load and store; those functions are defined here, no ThreadSanitizer
// runtime is linked), cudaMalloc hands out exact-sized ranges of one reserved
// arena with a shadow byte per 8 bytes, and every access a simulated thread
// makes is checked: global accesses against the live allocations, shared
// accesses for races, uninitialised reads and bounds (see cuda_sim.h).
// ASan would intercept the same accesses, so the sanitized build has no
// simulator (CMakeLists.txt).
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include "sim_internal.h"

namespace kdsim {
namespace {

// ------------------------------------------------------------------ the arena
// Allocations are 256-byte aligned (as cudaMalloc's) and separated by at
// least 256 unaddressable bytes; freed ranges are never handed out again, so
// a use after free stays detectable. shadow[i] = addressable bytes at the start
// of granule i (8 bytes): 0 none, 8 all.
constexpr size_t kArenaBytes = size_t(256) << 30;  // address space only (MAP_NORESERVE)
constexpr size_t kAlign = 256, kGap = 256;

struct Allocation {
  size_t bytes;
  bool live;
};
struct Arena {
  uintptr_t lo = 0, next = 0;
  uint8_t* shadow = nullptr;
  std::map<uintptr_t, Allocation> allocations;
};
Arena& arena() {
  static Arena a = [] {
    Arena arena;
    void* mem = mmap(nullptr, kArenaBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    void* shadow =
        mmap(nullptr, kArenaBytes / 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED || shadow == MAP_FAILED) {
      std::fprintf(stderr, "[kdsim] cannot reserve the simulated device memory (%zu GiB of address space)\n",
                   kArenaBytes >> 30);
      std::abort();
    }
    arena.lo = arena.next = reinterpret_cast<uintptr_t>(mem);
    arena.shadow = static_cast<uint8_t*>(shadow);
    return arena;
  }();
  return a;
}
// Cached for the hot path (set once the arena exists).
uintptr_t g_arena_lo = 0;
size_t g_arena_used = 0;
size_t g_bytes_live = 0;  // the live allocations' sizes, summed

void set_shadow(uintptr_t p, size_t bytes, bool addressable) {
  Arena& a = arena();
  const size_t first = (p - a.lo) / 8;
  const size_t full = bytes / 8;
  std::memset(a.shadow + first, addressable ? 8 : 0, full);
  if (bytes % 8) a.shadow[first + full] = addressable ? uint8_t(bytes % 8) : 0;
}

bool addressable(uintptr_t p, size_t bytes) {
  const Arena& a = arena();
  for (uintptr_t q = p; q < p + bytes;) {
    const uintptr_t granule_end = (q & ~uintptr_t(7)) + 8;
    const uintptr_t end = std::min<uintptr_t>(p + bytes, granule_end);
    if (end - (q & ~uintptr_t(7)) > a.shadow[(q - a.lo) / 8]) return false;
    q = end;
  }
  return true;
}

// "12 bytes past the end of a 400-byte allocation at 0x..." for a bad address.
std::string where_in_arena(uintptr_t p) {
  const Arena& a = arena();
  auto it = a.allocations.upper_bound(p);
  std::ostringstream out;
  if (it != a.allocations.begin()) {
    --it;
    const uintptr_t start = it->first;
    const size_t bytes = it->second.bytes;
    if (p < start + bytes) {
      out << (it->second.live ? "inside" : "inside a freed") << " " << bytes << "-byte allocation at 0x" << std::hex
          << start << std::dec << " (offset " << p - start << ")";
    } else {
      out << p - (start + bytes) << " bytes past the end of a " << (it->second.live ? "" : "freed ") << bytes
          << "-byte allocation at 0x" << std::hex << start;
    }
    return out.str();
  }
  out << "before every allocation";
  return out.str();
}

// ------------------------------------------------------------------ shared-memory shadow
struct Access {
  int32_t who = -1;      // rank * 1024 + thread (the latest one); -1 none
  bool several = false;  // reads: more than one thread read in this interval
  uint32_t gen = 0, cgen = 0, wgen = 0;
  uintptr_t pc = 0;
};
struct Word {  // 4 bytes of a block's shared memory
  uint64_t serial = 0;
  uint8_t init = 0;  // bit i: byte i written
  Access write, read;
};
constexpr int32_t kNobody = -1;
std::vector<Word> g_shadow[kMaxClusterBlocks];
std::set<std::pair<uintptr_t, uintptr_t>> g_reported;
size_t g_dynamic_offset = 0;
size_t g_dynamic_bytes = 0;

int32_t who(const Thread& t) { return int32_t(t.block->rank * 1024 + t.tid); }

// Whether a barrier separates `prev` from `now` (accesses to rank `target`'s memory).
bool ordered(const Access& prev, const Access& now, int32_t now_who, unsigned target) {
  if (prev.cgen != now.cgen) return true;  // a cluster.sync between them
  if (prev.who < 0) return false;
  const unsigned prev_rank = unsigned(prev.who) / 1024, now_rank = unsigned(now_who) / 1024;
  if (prev_rank == target && now_rank == target && prev.gen != now.gen) return true;  // a __syncthreads
  const unsigned prev_warp = (unsigned(prev.who) % 1024) / kWarp, now_warp = (unsigned(now_who) % 1024) / kWarp;
  return prev_rank == now_rank && prev_warp == now_warp && prev.wgen != now.wgen;  // a warp collective
}

std::string who_text(const Access& a) {
  if (a.several) return "several threads (last " + who_text(Access{a.who, false, 0, 0, 0, 0}) + ")";
  const int32_t id = a.who;
  const Block& b = g_run.blocks[unsigned(id) / 1024];
  return describe(*b.threads[unsigned(id) % 1024]);
}

void report_race(const char* kind, const Access& prev, const char* prev_verb, const Thread& t, uintptr_t pc,
                 const char* verb, unsigned rank, size_t offset) {
  if (!g_reported.insert({prev.pc, pc}).second) return;
  std::ostringstream msg;
  msg << "shared-memory race (" << kind << ") in " << g_run.kernel_name << ": " << who_text(prev) << " " << prev_verb
      << " byte " << offset << " of " << (rank == t.block->rank ? "its block's" : "a cluster block's")
      << " shared memory at " << symbolize(prev.pc) << "; " << describe(t) << " " << verb << " it at " << symbolize(pc)
      << " with no barrier between";
  report(msg.str());
}

void shared_access(Thread& t, unsigned rank, size_t offset, size_t size, bool write, bool atomic, uintptr_t pc) {
  Block& target = g_run.blocks[rank];
  if (rank != t.block->rank && target.exited() && g_reported.insert({pc, 1}).second)
    report("shared memory of an exited block in " + g_run.kernel_name + ": " + describe(t) + " accesses cluster rank " +
           std::to_string(rank) + "'s shared memory at " + symbolize(pc) + " after that block finished");
  if (offset + size > g_dynamic_offset && offset < g_dynamic_offset + kMaxDynamicShared &&
      offset + size > g_dynamic_offset + g_dynamic_bytes && g_reported.insert({pc, 2}).second) {
    report("dynamic shared memory out of bounds in " + g_run.kernel_name + ": " + describe(t) + " " +
           (write ? "writes" : "reads") + " bytes " + std::to_string(offset - g_dynamic_offset) + ".." +
           std::to_string(offset - g_dynamic_offset + size - 1) + " of a " + std::to_string(g_dynamic_bytes) +
           "-byte allocation at " + symbolize(pc));
  }
  std::vector<Word>& shadow = g_shadow[rank];
  if (shadow.empty()) shadow.resize(shared_window().size / 4 + 1);
  const int32_t me = who(t);
  Access now{me, false, target.barrier_gen, g_run.cluster_gen, t.block->warp_gen[t.warp], pc};
  for (size_t w = offset / 4; w <= (offset + size - 1) / 4; ++w) {
    Word& e = shadow[w];
    if (e.serial != target.serial) e = Word{target.serial, 0, {}, {}};
    const size_t lo = std::max(offset, w * 4), hi = std::min(offset + size, w * 4 + 4);
    const uint8_t bytes = uint8_t(((1u << (hi - lo)) - 1) << (lo - w * 4));
    if (atomic) {  // atomics never race with each other; they do initialise
      e.init |= bytes;
      continue;
    }
    if (write) {
      if (e.write.who != kNobody && e.write.who != me && !ordered(e.write, now, me, rank))
        report_race("write after write", e.write, "wrote", t, pc, "writes", rank, offset);
      else if (e.read.who != kNobody && (e.read.several || e.read.who != me) && !ordered(e.read, now, me, rank))
        report_race("write after read", e.read, "read", t, pc, "writes", rank, offset);
      e.write = now;
      e.read.who = kNobody;
      e.init |= bytes;
    } else {
      if ((e.init & bytes) != bytes && g_reported.insert({pc, 0}).second)
        report("uninitialised shared memory read in " + g_run.kernel_name + ": " + describe(t) + " reads byte " +
               std::to_string(offset) + ", which no thread of the block has written, at " + symbolize(pc));
      if (e.write.who != kNobody && e.write.who != me && !ordered(e.write, now, me, rank))
        report_race("read after write", e.write, "wrote", t, pc, "reads", rank, offset);
      const bool several =
          e.read.who != kNobody && (e.read.several || e.read.who != me) && !ordered(e.read, now, me, rank);
      e.read = now;
      e.read.several = several;
    }
  }
}

void global_access(Thread& t, uintptr_t p, size_t size, bool write, uintptr_t pc) {
  if (addressable(p, size)) return;
  if (!g_reported.insert({pc, 3}).second) return;
  report("out-of-bounds global " + std::string(write ? "write" : "read") + " in " + g_run.kernel_name + ": " +
         describe(t) + " " + (write ? "writes " : "reads ") + std::to_string(size) + " bytes at 0x" +
         [&] {
           char buf[32];
           std::snprintf(buf, sizeof buf, "%lx", static_cast<unsigned long>(p));
           return std::string(buf);
         }() +
         ", " + where_in_arena(p) + ", at " + symbolize(pc));
}

inline void on_access(const void* address, size_t size, bool write, bool atomic, uintptr_t pc) {
  Thread* t = g_thread;
  if (!t) return;  // host code of a kernel source file
  const uintptr_t p = reinterpret_cast<uintptr_t>(address);
  if (p - g_arena_lo < g_arena_used) return global_access(*t, p, size, write, pc);
  unsigned rank = 0;
  size_t offset = 0;
  if (g_window && locate_shared(p, &rank, &offset)) shared_access(*t, rank, offset, size, write, atomic, pc);
}

}  // namespace

void checker_begin_launch() {
  g_dynamic_offset = shared_window().dynamic_lo - shared_window().lo;
  g_dynamic_bytes = g_run.launch->dynamic_smem;
}

void* device_malloc(size_t bytes) {
  Arena& a = arena();
  const uintptr_t start = (a.next + kAlign - 1) & ~uintptr_t(kAlign - 1);
  if (start + bytes + kGap > a.lo + kArenaBytes) return nullptr;
  a.next = start + std::max<size_t>(bytes, 1) + kGap;
  a.allocations[start] = Allocation{bytes, true};
  g_bytes_live += bytes;
  set_shadow(start, bytes, true);
  g_arena_lo = a.lo;
  g_arena_used = a.next - a.lo;
  return reinterpret_cast<void*>(start);
}

bool device_free(void* ptr) {
  Arena& a = arena();
  const auto it = a.allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == a.allocations.end() || !it->second.live) return false;
  it->second.live = false;
  g_bytes_live -= it->second.bytes;
  set_shadow(it->first, it->second.bytes, false);
  // Give the pages back; the addresses stay reserved (and unaddressable).
  const uintptr_t page = 4096, lo = (it->first + page - 1) & ~(page - 1),
                  hi = (it->first + it->second.bytes) & ~(page - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  return true;
}

bool device_range_ok(const void* p, size_t bytes, std::string* why) {
  const uintptr_t q = reinterpret_cast<uintptr_t>(p);
  if (q - g_arena_lo >= g_arena_used) return true;  // host memory (cudaMemcpy of host buffers)
  if (addressable(q, bytes)) return true;
  *why = std::to_string(bytes) + " bytes at " + where_in_arena(q) + " are not all inside one live allocation";
  return false;
}

size_t device_bytes_in_use() { return g_bytes_live; }

}  // namespace kdsim

// ------------------------------------------------------------------ compiler instrumentation entry points
#define KDSIM_PC reinterpret_cast<uintptr_t>(__builtin_return_address(0))
#define KDSIM_ACCESS_HOOKS(n)                                                                \
  void __tsan_read##n(void* a) { kdsim::on_access(a, n, false, false, KDSIM_PC); }           \
  void __tsan_write##n(void* a) { kdsim::on_access(a, n, true, false, KDSIM_PC); }           \
  void __tsan_unaligned_read##n(void* a) { kdsim::on_access(a, n, false, false, KDSIM_PC); } \
  void __tsan_unaligned_write##n(void* a) { kdsim::on_access(a, n, true, false, KDSIM_PC); } \
  void __tsan_volatile_read##n(void* a) { kdsim::on_access(a, n, false, false, KDSIM_PC); }  \
  void __tsan_volatile_write##n(void* a) { kdsim::on_access(a, n, true, false, KDSIM_PC); }
// Atomics of the simulated threads (one OS thread runs them all, so the
// operation itself is a plain one made atomic for form's sake).
#define KDSIM_ATOMIC_HOOKS(bits, T)                                                         \
  T __tsan_atomic##bits##_load(const volatile T* a, int) {                                  \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), false, true, KDSIM_PC);                  \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                            \
  }                                                                                         \
  void __tsan_atomic##bits##_store(volatile T* a, T v, int) {                               \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                               \
  }                                                                                         \
  T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) {                               \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                     \
  }                                                                                         \
  T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) {                              \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                      \
  }                                                                                         \
  T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) {                              \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                      \
  }                                                                                         \
  T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) {                              \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                      \
  }                                                                                         \
  T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) {                               \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                       \
  }                                                                                         \
  T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) {                              \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                      \
  }                                                                                         \
  int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {   \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
  }                                                                                         \
  int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {     \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
  }                                                                                         \
  T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) {         \
    kdsim::on_access(const_cast<T*>(a), sizeof(T), true, true, KDSIM_PC);                   \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);       \
    return c;                                                                               \
  }
extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
void __tsan_read_range(void* a, unsigned long size) { kdsim::on_access(a, size, false, false, KDSIM_PC); }
void __tsan_write_range(void* a, unsigned long size) { kdsim::on_access(a, size, true, false, KDSIM_PC); }
KDSIM_ACCESS_HOOKS(1)
KDSIM_ACCESS_HOOKS(2)
KDSIM_ACCESS_HOOKS(4)
KDSIM_ACCESS_HOOKS(8)
KDSIM_ACCESS_HOOKS(16)
KDSIM_ATOMIC_HOOKS(8, uint8_t)
KDSIM_ATOMIC_HOOKS(16, uint16_t)
KDSIM_ATOMIC_HOOKS(32, uint32_t)
KDSIM_ATOMIC_HOOKS(64, uint64_t)
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) {}
}
