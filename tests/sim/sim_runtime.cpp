// The CUDA simulator's execution engine: fibers, the schedule, launches,
// barriers, warp collectives, cluster shared memory, reports. The model and
// its limits are described in include/cuda_sim.h.
#include <dlfcn.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "sim_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define KDSIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KDSIM_ASAN 1
#endif
#endif
#if defined(KDSIM_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "the CUDA simulator's fiber switch (kdsim_switch below) is written for x86-64"
#endif

// Dynamic shared memory lives in the thread_local block with the static
// __shared__ variables, so the blocks of a cluster swap it with them.
uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

alignas(16) static thread_local unsigned char kdsim_dynamic_shared[kdsim::kMaxDynamicShared];

// Saves the callee-saved registers and the FPU/SSE control words on the
// current stack, stores the stack pointer in *from_sp, and resumes the
// context whose stack pointer is to_sp.
extern "C" void kdsim_switch(void** from_sp, void* to_sp);
asm(R"(
  .text
  .globl kdsim_switch
  .type kdsim_switch, @function
kdsim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kdsim_switch, .-kdsim_switch
)");

namespace kdsim {

ThreadState* g_current = nullptr;
Thread* g_thread = nullptr;
Run g_run;
SharedWindow* g_window = nullptr;

namespace {

// ------------------------------------------------------------------ configuration
cudaError_t g_last_error = cudaSuccess;
uint64_t g_reports = 0;
uint64_t g_next_serial = 1;
std::vector<Thread*> g_release_buffer;

struct DeviceConfig {
  int cc_major = 9, cc_minor = 0;
};
DeviceConfig& device_config() {
  static DeviceConfig config = [] {
    DeviceConfig c;
    if (const char* env = std::getenv("KDSIM_CC")) {
      if (std::sscanf(env, "%d.%d", &c.cc_major, &c.cc_minor) < 1 || c.cc_major < 5) {
        std::fprintf(stderr, "[kdsim] KDSIM_CC=%s: expected a compute capability such as 9.0 or 8.0\n", env);
        std::exit(2);
      }
    }
    return c;
  }();
  return config;
}

// Per-kernel attributes set with cudaFuncSetAttribute.
struct FunctionAttributes {
  size_t max_dynamic_shared = 48 * 1024;
  bool non_portable_clusters = false;
};
std::map<const void*, FunctionAttributes>& function_attributes() {
  static std::map<const void*, FunctionAttributes> attributes;
  return attributes;
}

// ------------------------------------------------------------------ fibers
#if defined(KDSIM_ASAN)
constexpr size_t kStackSize = 512 * 1024;  // ASan's redzones make frames several times larger
#else
constexpr size_t kStackSize = 64 * 1024;
#endif
void* g_scheduler_sp = nullptr;
#if defined(KDSIM_ASAN)
const void* g_scheduler_stack_bottom = nullptr;
size_t g_scheduler_stack_size = 0;
#endif

// Stacks are reused across blocks; each has a guard page below it.
std::vector<char*>& stack_pool() {
  static std::vector<char*> pool;
  return pool;
}
char* stack_for(size_t index) {
  std::vector<char*>& pool = stack_pool();
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  while (pool.size() <= index) {
    void* mem =
        mmap(nullptr, kStackSize + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
      std::fprintf(stderr, "[kdsim] cannot map a %zu KiB fiber stack for simulated thread %zu\n", kStackSize / 1024,
                   index);
      std::abort();
    }
    mprotect(mem, page, PROT_NONE);  // a stack overflow faults instead of corrupting a neighbour
    pool.push_back(static_cast<char*>(mem) + page);
  }
  return pool[index];
}

void switch_to_thread(Thread* t) {
#if defined(KDSIM_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, t->stack, t->stack_size);
  kdsim_switch(&g_scheduler_sp, t->sp);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  kdsim_switch(&g_scheduler_sp, t->sp);
#endif
}

// From the running thread back to the scheduler; returns when it is resumed.
void yield_to_scheduler(Thread* t, bool exiting) {
#if defined(KDSIM_ASAN)
  __sanitizer_start_switch_fiber(exiting ? nullptr : &t->asan_fake_stack, g_scheduler_stack_bottom,
                                 g_scheduler_stack_size);
  kdsim_switch(&t->sp, g_scheduler_sp);
  __sanitizer_finish_switch_fiber(t->asan_fake_stack, &g_scheduler_stack_bottom, &g_scheduler_stack_size);
#else
  (void)exiting;
  kdsim_switch(&t->sp, g_scheduler_sp);
#endif
}

void thread_exit(Thread* t);

[[noreturn]] void fiber_entry() {
#if defined(KDSIM_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &g_scheduler_stack_bottom, &g_scheduler_stack_size);
#endif
  Thread* t = g_thread;
  g_run.launch->body(g_run.launch->args);
  thread_exit(t);
  __builtin_unreachable();
}

// Lays out a fresh stack so that kdsim_switch "returns" into fiber_entry.
void prepare_fiber(Thread* t) {
#if defined(KDSIM_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(t->stack, t->stack_size);  // frames of an abandoned (deadlocked) run
#endif
  uintptr_t* sp =
      reinterpret_cast<uintptr_t*>((reinterpret_cast<uintptr_t>(t->stack) + t->stack_size) & ~uintptr_t(15));
  *--sp = 0;                                          // fiber_entry's (absent) return address
  *--sp = reinterpret_cast<uintptr_t>(&fiber_entry);  // where kdsim_switch's ret goes
  for (int i = 0; i < 6; ++i) *--sp = 0;              // rbp rbx r12 r13 r14 r15
  *--sp = uintptr_t(0x037F) << 32 | 0x1F80;           // default x87 control word, MXCSR
  t->sp = sp;
  t->asan_fake_stack = nullptr;
}

// ------------------------------------------------------------------ threads and blocks
std::vector<Thread>& thread_pool() {
  static std::vector<Thread> pool;
  return pool;
}

uint3 unflatten(unsigned i, uint3 dim) { return uint3{i % dim.x, (i / dim.x) % dim.y, i / (dim.x * dim.y)}; }

void make_ready(Thread* t) {
  t->wait = Wait::Running;
  t->block->ready.push_back(t);
}

// Releases threads[0, n) (all arrived) in schedule order; reorders the array.
void release(Thread** threads, size_t n) {
  scheduler().order(threads, threads + n);
  for (size_t i = 0; i < n; ++i) make_ready(threads[i]);
}

std::string lanes_text(unsigned lanes) {
  std::ostringstream out;
  bool first = true;
  for (int l = 0; l < kWarp; ++l) {
    if (!(lanes >> l & 1u)) continue;
    int end = l;
    while (end + 1 < kWarp && (lanes >> (end + 1) & 1u)) ++end;
    out << (first ? "" : ",") << l;
    if (end > l) out << "-" << end;
    first = false;
    l = end;
  }
  return first ? "none" : out.str();
}

const char* op_name(const Thread& t) {
  switch (t.op) {
    case WarpOp::Sync: return "__syncwarp";
    case WarpOp::Shuffle:
      switch (Shfl(t.kind)) {
        case Shfl::Idx: return "__shfl_sync";
        case Shfl::Up: return "__shfl_up_sync";
        case Shfl::Down: return "__shfl_down_sync";
        case Shfl::Xor: return "__shfl_xor_sync";
      }
      break;
    case WarpOp::Vote:
      switch (Vote(t.kind)) {
        case Vote::Ballot: return "__ballot_sync";
        case Vote::Any: return "__any_sync";
        case Vote::All: return "__all_sync";
      }
      break;
  }
  return "warp collective";
}

Thread* warp_lane(Block& b, unsigned warp, unsigned lane) {
  const size_t i = size_t(warp) * kWarp + lane;
  return i < b.threads.size() ? b.threads[i] : nullptr;
}

std::string hex_mask(unsigned mask) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", mask);
  return buf;
}

// Completes the collective of the lanes in `mask` of warp `warp` if all of them
// wait in one with that mask (a mismatch leaves them waiting: reported as a deadlock).
void try_complete_warp(Block& b, unsigned warp, unsigned mask) {
  if ((b.waiting_lanes[warp] & mask) != mask) return;
  Thread* group[kWarp];
  size_t n = 0;
  for (unsigned lanes = mask; lanes; lanes &= lanes - 1) {
    Thread* t = warp_lane(b, warp, unsigned(__builtin_ctz(lanes)));
    if (t->mask != mask) return;
    group[n++] = t;
  }
  Thread& first = *group[0];
  for (size_t i = 1; i < n; ++i) {
    const Thread* t = group[i];
    if (t->op != first.op || t->kind != first.kind) {
      report("warp divergence in " + g_run.kernel_name + ": lanes of mask " + hex_mask(mask) +
             " meet at different collectives: " + describe(first) + " at " + op_name(first) + " (" +
             site_text(first.site) + "), " + describe(*t) + " at " + op_name(*t) + " (" + site_text(t->site) + ")");
      break;
    }
  }
  unsigned ballot = 0;
  if (first.op == WarpOp::Vote)
    for (size_t i = 0; i < n; ++i) ballot |= unsigned(group[i]->value != 0) << group[i]->lane;
  for (size_t i = 0; i < n; ++i) {
    Thread* t = group[i];
    switch (t->op) {
      case WarpOp::Sync: break;
      case WarpOp::Shuffle: {
        const int lane = int(t->lane), width = t->width;
        const int seg = lane & ~(width - 1);
        int src = lane;
        switch (Shfl(t->kind)) {
          case Shfl::Idx: src = seg + (t->lane_arg & (width - 1)); break;
          case Shfl::Up: src = lane - t->lane_arg >= seg ? lane - t->lane_arg : lane; break;
          case Shfl::Down: src = lane + t->lane_arg < seg + width ? lane + t->lane_arg : lane; break;
          case Shfl::Xor: {
            const int x = lane ^ t->lane_arg;
            src = x >= seg && x < seg + width ? x : lane;
            break;
          }
        }
        if (src != lane && !(mask >> src & 1u)) {
          const Thread* source = warp_lane(b, warp, unsigned(src));
          report(std::string(op_name(*t)) + " in " + g_run.kernel_name + " at " + site_text(t->site) + ": " +
                 describe(*t) + " reads lane " + std::to_string(src) + ", outside the mask " + hex_mask(mask) +
                 (!source                      ? " (no such thread)"
                  : source->wait == Wait::Done ? " (it has exited)"
                                               : ""));
          t->result = t->value;
        } else {
          t->result = warp_lane(b, warp, unsigned(src))->value;
        }
        break;
      }
      case WarpOp::Vote:
        switch (Vote(t->kind)) {
          case Vote::Ballot: t->result = ballot; break;
          case Vote::Any: t->result = ballot != 0; break;
          case Vote::All: t->result = ballot == mask; break;
        }
        break;
    }
  }
  b.waiting_lanes[warp] &= ~mask;
  ++b.warp_gen[warp];
  release(group, n);
}

// Common arrival at a warp collective: checks the mask, waits, returns the result.
uint64_t warp_collective(Site site, WarpOp op, int kind, unsigned mask, uint64_t value, int lane_arg, int width) {
  Thread* t = g_thread;
  Block& b = *t->block;
  if (width < 1 || width > kWarp || (width & (width - 1)) != 0) {
    report("warp collective in " + g_run.kernel_name + " at " + site_text(site) + ": width " + std::to_string(width) +
           " is not a power of two in [1, 32]");
    width = kWarp;
  }
  if (!(mask >> t->lane & 1u)) {
    report("warp collective in " + g_run.kernel_name + " at " + site_text(site) + ": " + describe(*t) + " (lane " +
           std::to_string(t->lane) + ") calls it with mask " + hex_mask(mask) + ", which leaves the lane out");
    mask |= 1u << t->lane;
  }
  const size_t warp_first = size_t(t->warp) * kWarp;
  const size_t lanes_here = std::min<size_t>(kWarp, b.threads.size() - warp_first);
  const unsigned existing = lanes_here == kWarp ? 0xffffffffu : (1u << lanes_here) - 1u;
  const unsigned missing = mask & (~existing | b.exited_lanes[t->warp]);
  if (missing) {
    report("warp collective in " + g_run.kernel_name + " at " + site_text(site) + ": " + describe(*t) +
           " names lanes " + lanes_text(missing) + " in mask " + hex_mask(mask) + ", which " +
           ((missing & ~existing) ? "do not exist" : "have exited"));
    mask &= ~missing;
  }
  t->wait = Wait::Warp;
  t->site = site;
  t->op = op;
  t->kind = kind;
  t->mask = mask;
  t->value = value;
  t->lane_arg = lane_arg;
  t->width = width;
  b.waiting_lanes[t->warp] |= 1u << t->lane;
  try_complete_warp(b, t->warp, mask);
  yield_to_scheduler(t, false);
  return t->result;
}

void thread_exit(Thread* t) {
  Block& b = *t->block;
  t->wait = Wait::Done;
  ++b.done;
  b.exited_lanes[t->warp] |= 1u << t->lane;
  yield_to_scheduler(t, true);
}

// ------------------------------------------------------------------ shared memory window
int find_tls(dl_phdr_info* info, size_t, void* out) {
  SharedWindow& w = *static_cast<SharedWindow*>(out);
  const uintptr_t probe = reinterpret_cast<uintptr_t>(kdsim_dynamic_shared);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t lo = reinterpret_cast<uintptr_t>(info->dlpi_tls_data);
    if (ph.p_type == PT_TLS && lo && probe >= lo && probe < lo + ph.p_memsz) {
      w.lo = lo;
      w.size = ph.p_memsz;
      return 1;
    }
  }
  return 0;
}

// Switches the live shared memory (the TLS block) to cluster rank `rank`.
void activate_block(unsigned rank) {
  if (rank == g_run.current) return;
  SharedWindow& w = shared_window();
  unsigned char* live = reinterpret_cast<unsigned char*>(w.lo);
  std::memcpy(w.saved_copy(g_run.current), live, w.size);
  std::memcpy(live, w.saved_copy(rank), w.size);
  g_run.current = rank;
}

// ------------------------------------------------------------------ deadlock reports
void report_stuck_block(Block& b) {
  std::map<std::string, std::vector<Thread*>> by_place;
  for (Thread* t : b.threads) {
    switch (t->wait) {
      case Wait::Block: by_place["wait at __syncthreads (" + site_text(t->site) + ")"].push_back(t); break;
      case Wait::Cluster: by_place["wait at cluster.sync (" + site_text(t->site) + ")"].push_back(t); break;
      case Wait::Warp:
        by_place[std::string("wait at ") + op_name(*t) + " (" + site_text(t->site) + ") with mask " + hex_mask(t->mask)]
            .push_back(t);
        break;
      case Wait::Done: by_place["have exited"].push_back(t); break;
      case Wait::Running: by_place["are runnable"].push_back(t); break;
    }
  }
  std::ostringstream msg;
  msg << "barrier divergence or deadlock in " << g_run.kernel_name << ", block (" << b.idx.x << "," << b.idx.y << ","
      << b.idx.z << "): no thread can continue;";
  bool first = true;
  for (auto& [place, threads] : by_place) {
    msg << (first ? " " : "; ") << threads.size() << " thread" << (threads.size() == 1 ? "" : "s") << " " << place
        << " (e.g. thread (" << threads.front()->thread_idx.x << "," << threads.front()->thread_idx.y << ","
        << threads.front()->thread_idx.z << "))";
    first = false;
  }
  report(msg.str());
}

// ------------------------------------------------------------------ running a cluster
void run_cluster(const Launch& l, const std::vector<uint3>& block_ids, unsigned cluster_rank_base) {
  (void)cluster_rank_base;
  const unsigned threads_per_block = l.block.x * l.block.y * l.block.z;
  const unsigned ranks = unsigned(block_ids.size());
  std::vector<Thread>& pool = thread_pool();
  if (pool.size() < size_t(ranks) * threads_per_block) pool.resize(size_t(ranks) * threads_per_block);
  g_run.blocks.assign(ranks, Block{});
  g_run.current = 0;
  g_run.at_cluster = 0;
  g_run.cluster_gen = 0;
  const unsigned warps = (threads_per_block + kWarp - 1) / kWarp;
  const uint3 cluster_dim = uint3{l.cluster.x, l.cluster.y, l.cluster.z};
  for (unsigned r = 0; r < ranks; ++r) {
    Block& b = g_run.blocks[r];
    b.idx = block_ids[r];
    b.rank = r;
    b.serial = g_next_serial++;
    b.warp_gen.assign(warps, 0);
    b.exited_lanes.assign(warps, 0);
    b.waiting_lanes.assign(warps, 0);
    b.ready.reserve(2 * threads_per_block);
    b.threads.resize(threads_per_block);
    for (unsigned i = 0; i < threads_per_block; ++i) {
      Thread* t = &pool[size_t(r) * threads_per_block + i];
      const size_t stack_index = size_t(r) * threads_per_block + i;
      *t = Thread{};
      t->thread_idx = unflatten(i, uint3{l.block.x, l.block.y, l.block.z});
      t->block_idx = b.idx;
      t->block_dim = uint3{l.block.x, l.block.y, l.block.z};
      t->grid_dim = uint3{l.grid.x, l.grid.y, l.grid.z};
      t->cluster_dim = cluster_dim;
      t->cluster_rank = r;
      t->cluster_size = ranks;
      t->block = &b;
      t->tid = i;
      t->lane = i % kWarp;
      t->warp = i / kWarp;
      t->stack = stack_for(stack_index);
      t->stack_size = kStackSize;
      prepare_fiber(t);
      b.threads[i] = t;
    }
    std::vector<Thread*> start = b.threads;
    scheduler().order(start);
    b.ready = start;
  }
  SharedWindow& w = shared_window();
  if (ranks == 1) {
    w.saved.clear();
  } else {
    w.saved.resize(size_t(ranks) * w.size);
    for (unsigned r = 0; r < ranks; ++r) std::memcpy(w.saved_copy(r), reinterpret_cast<void*>(w.lo), w.size);
  }
  checker_begin_launch();

  std::vector<unsigned> rank_order(ranks);
  for (unsigned r = 0; r < ranks; ++r) rank_order[r] = r;
  scheduler().order(rank_order);
  while (true) {
    // The running block continues while it can; then the next one in schedule order.
    Block* next = nullptr;
    if (g_run.blocks[g_run.current].next_ready < g_run.blocks[g_run.current].ready.size()) {
      next = &g_run.blocks[g_run.current];
    } else {
      for (unsigned r : rank_order)
        if (g_run.blocks[r].next_ready < g_run.blocks[r].ready.size()) {
          next = &g_run.blocks[r];
          break;
        }
    }
    if (!next) break;
    activate_block(next->rank);
    while (next->next_ready < next->ready.size()) {
      Thread* t = next->ready[next->next_ready++];
      if (next->next_ready == next->ready.size()) {  // keep the queue short
        next->ready.clear();
        next->next_ready = 0;
      }
      g_thread = t;
      g_current = t;
      threadIdx = t->thread_idx;
      blockIdx = t->block_idx;
      blockDim = t->block_dim;
      gridDim = t->grid_dim;
      switch_to_thread(t);
      g_current = nullptr;
      g_thread = nullptr;
    }
  }
  for (Block& b : g_run.blocks) {
    if (!b.exited()) report_stuck_block(b);
  }
  activate_block(0);
}

}  // namespace

// ------------------------------------------------------------------ schedule
Scheduler& scheduler() {
  static Scheduler s = [] {
    Scheduler sch;
    const char* env = std::getenv("KDSIM_SCHEDULE");
    const std::string spec = env ? env : "in-order";
    if (spec == "in-order") {
      sch.schedule = Schedule::InOrder;
    } else if (spec == "reverse") {
      sch.schedule = Schedule::Reverse;
    } else if (spec.rfind("random", 0) == 0) {
      sch.schedule = Schedule::Random;
      sch.seed =
          spec.size() > 7 && spec[6] == ':' ? std::strtoull(spec.c_str() + 7, nullptr, 10) : std::random_device{}();
      sch.rng.seed(sch.seed);
    } else {
      std::fprintf(stderr, "[kdsim] KDSIM_SCHEDULE=%s: expected in-order, reverse, random or random:SEED\n",
                   spec.c_str());
      std::exit(2);
    }
    if (sch.schedule == Schedule::Random)
      std::printf("[ kdsim    ] schedule random:%llu (replay with KDSIM_SCHEDULE=random:%llu)\n",
                  static_cast<unsigned long long>(sch.seed), static_cast<unsigned long long>(sch.seed));
    else std::printf("[ kdsim    ] schedule %s\n", spec.c_str());
    return sch;
  }();
  return s;
}

// ------------------------------------------------------------------ reports
void report(const std::string& message) {
  ++g_reports;
  g_run.failed = true;
  constexpr uint64_t kMaxPrinted = 20;
  if (g_reports <= kMaxPrinted) std::fprintf(stderr, "[kdsim] %s\n", message.c_str());
  else if (g_reports == kMaxPrinted + 1) std::fprintf(stderr, "[kdsim] further reports are counted, not printed\n");
}

uint64_t report_count() { return g_reports; }

std::string describe(const Thread& t) {
  std::ostringstream out;
  out << "thread (" << t.thread_idx.x << "," << t.thread_idx.y << "," << t.thread_idx.z << ") of block ("
      << t.block_idx.x << "," << t.block_idx.y << "," << t.block_idx.z << ")";
  return out.str();
}

std::string site_text(Site s) {
  const char* file = s.file ? s.file : "?";
  const char* slash = std::strrchr(file, '/');
  if (slash) {  // keep "kernels/x.cu" rather than the absolute path
    const char* prev = slash;
    while (prev > file && prev[-1] != '/') --prev;
    file = prev > file ? prev : file;
  }
  return std::string(file) + ":" + std::to_string(s.line);
}

namespace {
// "kd::cuda::gemm_kernel<64, 64, 4, 4, false, true>" from addr2line's
// "void kd::cuda::(anonymous namespace)::gemm_kernel<...>(float const*, ...)".
std::string short_function_name(std::string f) {
  for (size_t at; (at = f.find("(anonymous namespace)::")) != std::string::npos;) f.erase(at, 23);
  if (f.rfind("void ", 0) == 0) f.erase(0, 5);
  if (!f.empty() && f.back() == ')') {  // drop the parameter list
    int depth = 0;
    for (size_t i = f.size(); i-- > 0;) {
      depth += f[i] == ')' ? 1 : f[i] == '(' ? -1 : 0;
      if (depth == 0) {
        f.erase(i);
        break;
      }
    }
  }
  return f;
}

std::string symbolize(uintptr_t pc, bool with_function) {
  static std::map<std::pair<uintptr_t, bool>, std::string> cache;
  const auto known = cache.find({pc, with_function});
  if (known != cache.end()) return known->second;
  Dl_info info{};
  std::string text = "pc 0x" + [&] {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lx", static_cast<unsigned long>(pc));
    return std::string(buf);
  }();
  if (dladdr(reinterpret_cast<void*>(pc), &info) && info.dli_fname) {
    char cmd[1024];
    std::snprintf(cmd, sizeof cmd, "addr2line -C -f -e '%s' 0x%lx 2>/dev/null", info.dli_fname,
                  static_cast<unsigned long>(pc - 1 - reinterpret_cast<uintptr_t>(info.dli_fbase)));
    if (FILE* p = popen(cmd, "r")) {
      char function[512] = "", where[512] = "";
      if (std::fgets(function, sizeof function, p) && std::fgets(where, sizeof where, p)) {
        function[std::strcspn(function, "\n")] = 0;
        where[std::strcspn(where, "\n")] = 0;
        std::string w = where;
        const size_t colon = w.rfind(':');
        const size_t paren = w.find(" (");
        if (paren != std::string::npos) w = w.substr(0, paren);
        if (colon != std::string::npos) {
          const std::string line = w.substr(w.rfind(':') + 1);
          std::string file = w.substr(0, w.rfind(':'));
          text = site_text(Site{file.c_str(), std::atoi(line.c_str())});
          if (with_function) text = short_function_name(function);
        }
      }
      pclose(p);
    }
  }
  return cache[{pc, with_function}] = text;
}
}  // namespace

std::string symbolize(uintptr_t pc) { return symbolize(pc, false); }

// ------------------------------------------------------------------ launches
cudaError_t record_error(cudaError_t status) {
  if (status != cudaSuccess && g_last_error == cudaSuccess) g_last_error = status;
  return status;
}
cudaError_t take_last_error(bool clear) {
  const cudaError_t status = g_last_error;
  if (clear) g_last_error = cudaSuccess;
  return status;
}

cudaError_t check_launch(const Launch& l) {
  const cudaDeviceProp& prop = device_properties();
  const unsigned threads = l.block.x * l.block.y * l.block.z;
  const uint64_t blocks = uint64_t(l.grid.x) * l.grid.y * l.grid.z;
  const unsigned cluster_blocks = l.cluster.x * l.cluster.y * l.cluster.z;
  FunctionAttributes& attributes = function_attributes()[l.kernel];
  std::string problem;
  if (threads == 0 || blocks == 0) problem = "an empty grid or block";
  else if (threads > unsigned(prop.maxThreadsPerBlock))
    problem = std::to_string(threads) + " threads per block (at most 1024)";
  else if (l.block.z > 64) problem = "blockDim.z > 64";
  else if (l.grid.y > 65535 || l.grid.z > 65535) problem = "gridDim.y or gridDim.z > 65535";
  else if (l.dynamic_smem > attributes.max_dynamic_shared)
    problem = std::to_string(l.dynamic_smem) + " bytes of dynamic shared memory (the kernel allows " +
              std::to_string(attributes.max_dynamic_shared) + "; raise it with cudaFuncSetAttribute)";
  else if (cluster_blocks > 1 && device_config().cc_major < 9) problem = "a cluster launch on a device below sm_90";
  else if (cluster_blocks > (attributes.non_portable_clusters ? 16u : 8u))
    problem = "a cluster of " + std::to_string(cluster_blocks) + " blocks";
  else if (l.grid.x % l.cluster.x || l.grid.y % l.cluster.y || l.grid.z % l.cluster.z)
    problem = "a grid that is not a multiple of the cluster dimensions";
  if (!problem.empty()) {
    std::fprintf(stderr, "[kdsim] launch refused: %s\n", problem.c_str());
    return cudaErrorInvalidConfiguration;
  }
  return cudaSuccess;
}

cudaError_t run_launch(const Launch& l) {
  const unsigned cluster_blocks = l.cluster.x * l.cluster.y * l.cluster.z;
  g_window = &shared_window();
  g_run.launch = &l;
  g_run.failed = false;
  g_run.kernel_name = symbolize(reinterpret_cast<uintptr_t>(l.kernel) + 1, true);
  {
    // Poison dynamic shared memory: a read of what no thread wrote yields NaN / garbage.
    std::memset(kdsim_dynamic_shared, 0xFF, std::min(l.dynamic_smem, kMaxDynamicShared));
  }

  // Clusters in schedule order; within a cluster, blocks by rank (x fastest).
  const uint3 clusters{l.grid.x / l.cluster.x, l.grid.y / l.cluster.y, l.grid.z / l.cluster.z};
  const uint64_t cluster_count = uint64_t(clusters.x) * clusters.y * clusters.z;
  std::vector<unsigned> order;
  if (scheduler().schedule != Schedule::InOrder) {
    order.resize(cluster_count);
    for (uint64_t i = 0; i < cluster_count; ++i) order[i] = unsigned(i);
    scheduler().order(order);
  }
  std::vector<uint3> ids(cluster_blocks);
  for (uint64_t i = 0; i < cluster_count && !g_run.failed; ++i) {
    const unsigned c = order.empty() ? unsigned(i) : order[i];
    const uint3 cid = unflatten(c, clusters);
    for (unsigned r = 0; r < cluster_blocks; ++r) {
      const uint3 in = unflatten(r, uint3{l.cluster.x, l.cluster.y, l.cluster.z});
      ids[r] = uint3{cid.x * l.cluster.x + in.x, cid.y * l.cluster.y + in.y, cid.z * l.cluster.z + in.z};
    }
    run_cluster(l, ids, 0);
  }
  g_run.launch = nullptr;
  return g_run.failed ? cudaErrorLaunchFailure : cudaSuccess;
}

// ------------------------------------------------------------------ barriers
void syncthreads(Site site) {
  Thread* t = g_thread;
  Block& b = *t->block;
  t->wait = Wait::Block;
  t->site = site;
  if (++b.at_barrier == b.threads.size()) {
    b.at_barrier = 0;
    std::vector<Thread*>& all = g_release_buffer;
    all = b.threads;
    for (Thread* u : all) {
      if (u->site.line != site.line || std::strcmp(u->site.file, site.file) != 0) {
        report("barrier divergence in " + g_run.kernel_name + ": " + describe(*t) + " waits at __syncthreads (" +
               site_text(site) + "), " + describe(*u) + " at another one (" + site_text(u->site) + ")");
        break;
      }
    }
    ++b.barrier_gen;
    release(all.data(), all.size());
  }
  yield_to_scheduler(t, false);
}

void cluster_sync(Site site) {
  Thread* t = g_thread;
  t->wait = Wait::Cluster;
  t->site = site;
  size_t total = 0;
  for (const Block& b : g_run.blocks) total += b.threads.size();
  if (++g_run.at_cluster == total) {
    g_run.at_cluster = 0;
    ++g_run.cluster_gen;
    for (Block& b : g_run.blocks) {
      ++b.barrier_gen;
      g_release_buffer = b.threads;
      release(g_release_buffer.data(), g_release_buffer.size());
    }
  }
  yield_to_scheduler(t, false);
}

void syncwarp(Site site, unsigned mask) { warp_collective(site, WarpOp::Sync, 0, mask, 0, 0, kWarp); }

uint64_t shuffle(Site site, Shfl kind, unsigned mask, uint64_t value, int lane_arg, int width) {
  return warp_collective(site, WarpOp::Shuffle, int(kind), mask, value, lane_arg, width);
}

unsigned vote(Site site, Vote kind, unsigned mask, bool predicate) {
  return unsigned(warp_collective(site, WarpOp::Vote, int(kind), mask, predicate, 0, kWarp));
}

unsigned active_mask() {
  const Thread* t = g_thread;
  unsigned lanes = 0;
  for (unsigned l = 0; l < unsigned(kWarp); ++l) {
    const Thread* u = warp_lane(*t->block, t->warp, l);
    if (u && u->wait != Wait::Done) lanes |= 1u << l;
  }
  return lanes;
}

[[noreturn]] void trap(Site site) {
  report("__trap() in " + g_run.kernel_name + " at " + site_text(site) + " by " + describe(*g_thread));
  thread_exit(g_thread);  // the others then wait for it and are reported
  __builtin_unreachable();
}

// ------------------------------------------------------------------ shared memory
SharedWindow& shared_window() {
  static SharedWindow w = [] {
    SharedWindow win;
    kdsim_dynamic_shared[0] = 0;  // make sure this thread's TLS block exists
    if (!dl_iterate_phdr(find_tls, &win)) {
      std::fprintf(stderr, "[kdsim] cannot find the thread_local block that holds __shared__ variables\n");
      std::abort();
    }
    win.dynamic_lo = reinterpret_cast<uintptr_t>(kdsim_dynamic_shared);
    return win;
  }();
  return w;
}

void* dynamic_shared_memory() { return kdsim_dynamic_shared; }

void* map_shared_rank(Site site, const void* ptr, unsigned rank) {
  unsigned from = 0;
  size_t offset = 0;
  if (!locate_shared(reinterpret_cast<uintptr_t>(ptr), &from, &offset)) {
    report("cluster.map_shared_rank in " + g_run.kernel_name + " at " + site_text(site) + ": " + describe(*g_thread) +
           " passes an address that is not shared memory");
    return const_cast<void*>(ptr);
  }
  if (rank >= g_run.blocks.size()) {
    report("cluster.map_shared_rank in " + g_run.kernel_name + " at " + site_text(site) + ": " + describe(*g_thread) +
           " asks for rank " + std::to_string(rank) + " of a cluster of " + std::to_string(g_run.blocks.size()) +
           " blocks");
    return const_cast<void*>(ptr);
  }
  SharedWindow& w = shared_window();
  if (rank == g_run.current) return reinterpret_cast<void*>(w.lo + offset);
  return w.saved_copy(rank) + offset;
}

// ------------------------------------------------------------------ device description
const cudaDeviceProp& device_properties() {
  static cudaDeviceProp prop = [] {
    cudaDeviceProp p{};
    const DeviceConfig& c = device_config();
    std::snprintf(p.name, sizeof p.name, "kdsim simulated GPU (sm_%d%d)", c.cc_major, c.cc_minor);
    p.totalGlobalMem = size_t(80) << 30;
    p.sharedMemPerBlock = 48 * 1024;
    p.sharedMemPerBlockOptin = kMaxDynamicShared;
    p.regsPerBlock = 65536;
    p.warpSize = kWarp;
    p.maxThreadsPerBlock = 1024;
    p.maxThreadsDim[0] = 1024, p.maxThreadsDim[1] = 1024, p.maxThreadsDim[2] = 64;
    p.maxGridSize[0] = 2147483647, p.maxGridSize[1] = 65535, p.maxGridSize[2] = 65535;
    p.major = c.cc_major;
    p.minor = c.cc_minor;
    p.multiProcessorCount = 8;
    p.maxThreadsPerMultiProcessor = 2048;
    p.maxBlocksPerMultiProcessor = 32;
    p.l2CacheSize = size_t(50) << 20;
    return p;
  }();
  return prop;
}

int occupancy_clusters(const void* kernel, const cudaLaunchConfig_t& config) {
  const cudaDeviceProp& prop = device_properties();
  unsigned ranks = 1;
  for (unsigned i = 0; i < config.numAttrs; ++i)
    if (config.attrs[i].id == cudaLaunchAttributeClusterDimension)
      ranks = config.attrs[i].val.clusterDim.x * config.attrs[i].val.clusterDim.y * config.attrs[i].val.clusterDim.z;
  const unsigned threads = config.blockDim.x * config.blockDim.y * config.blockDim.z;
  const FunctionAttributes& attributes = function_attributes()[kernel];
  if (prop.major < 9 || threads == 0 || threads > unsigned(prop.maxThreadsPerBlock) ||
      config.dynamicSmemBytes > attributes.max_dynamic_shared || ranks > (attributes.non_portable_clusters ? 16u : 8u))
    return 0;
  const int blocks_per_sm = std::min(prop.maxBlocksPerMultiProcessor, prop.maxThreadsPerMultiProcessor / int(threads));
  return blocks_per_sm * prop.multiProcessorCount / int(ranks);
}

cudaError_t set_function_attribute(const void* kernel, cudaFuncAttribute attribute, int value) {
  FunctionAttributes& a = function_attributes()[kernel];
  switch (attribute) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
      if (value < 0 || size_t(value) > kMaxDynamicShared) return cudaErrorInvalidValue;
      a.max_dynamic_shared = size_t(value);
      return cudaSuccess;
    case cudaFuncAttributeNonPortableClusterSizeAllowed: a.non_portable_clusters = value != 0; return cudaSuccess;
    case cudaFuncAttributePreferredSharedMemoryCarveout: return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

}  // namespace kdsim
