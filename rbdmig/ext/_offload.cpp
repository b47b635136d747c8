// rbdmig.ext._offload: server-side copies with the GIL released.
//
// rbdmig/ext/__init__.py is the documented front end: it validates the
// arguments and adapts progress callbacks; this file trusts it for types
// and only re-checks what would otherwise hang or crash.
//
// Why the CPython C API and not pybind11: a few functions taking plain
// arguments do not need a binding generator, and depending on nothing but
// Python's own headers keeps the build optional on g++ and Ceph's headers
// alone (pybind11 would be one more build requirement to fetch).
//
// Threads: Python is touched only on the calling thread, with the GIL
// held.  Everything that waits (connecting, in-flight ops, librbd) does
// so with the GIL released.  librados completions and librbd progress
// callbacks run on Ceph's threads and only record numbers, under a mutex,
// for the calling thread to report every kReportInterval.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <rados/librados.hpp>
#include <rbd/librbd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// How often the calling thread reports progress to Python, at most, and
// looks for Ctrl-C (set_report_interval changes the first; 0 reports
// each change, see Reports).
constexpr auto kReportInterval = std::chrono::milliseconds(100);
std::atomic<long long> g_report_interval_us{
    std::chrono::microseconds(kReportInterval).count()};
// With a report at each change: how often the calling thread looks.
constexpr auto kChangePoll = std::chrono::milliseconds(10);

// When the calling thread reports a copy's count done: once every
// interval; or, with the interval set to 0 (tests that must cancel at
// a known point, whatever the machine's speed), each time the count
// changes, never before it is 1.
class Reports {
 public:
  Reports()
      : each_change_(g_report_interval_us.load() == 0),
        interval_(each_change_ ? std::chrono::microseconds(kChangePoll)
                               : std::chrono::microseconds(
                                     g_report_interval_us.load())),
        next_(Clock::now() + interval_) {}

  bool each_change() const { return each_change_; }

  // The longest the caller waits before asking due().
  Clock::time_point until() const { return next_; }
  std::chrono::microseconds wait() const { return interval_; }

  // Whether to report ``done`` now.
  bool due(uint64_t done) {
    const auto now = Clock::now();
    bool report;
    if (each_change_) {
      report = done != last_;
      next_ = now + interval_;
    } else {
      report = now >= next_;
      if (report) next_ = now + interval_;
    }
    if (report) last_ = done;
    return report;
  }

 private:
  const bool each_change_;
  const std::chrono::microseconds interval_;
  Clock::time_point next_;
  uint64_t last_ = 0;
};

// How long a cancelled copy_image's connection stays blocklisted if
// lifting the entry fails (see fence()).
constexpr uint32_t kFenceSeconds = 3600;

// AioCompletions created and not yet released: tests read it through
// live_completions() to prove that nothing is left in flight.
std::atomic<long> g_live_completions{0};

// A failed Ceph call, turned into OSError(err, what) at the boundary.
struct CephError {
  int err;  // a positive errno
  std::string what;
};

// A Python exception already set (with the GIL held), to unwind with.
struct PythonError {};

[[noreturn]] void fail(int r, const std::string& what) {
  throw CephError{-r, what + ": " + std::strerror(-r)};
}

// Releases the GIL for its lifetime, also while an exception unwinds.
class NoGil {
 public:
  NoGil() : state_(PyEval_SaveThread()) {}
  ~NoGil() { PyEval_RestoreThread(state_); }
  NoGil(const NoGil&) = delete;
  NoGil& operator=(const NoGil&) = delete;

 private:
  PyThreadState* state_;
};

// A Python exception set on this thread, held while the GIL is released
// (cancellation waits for in-flight work) and raised again afterwards.
class PendingError {
 public:
  ~PendingError() {
    Py_XDECREF(type_);
    Py_XDECREF(value_);
    Py_XDECREF(tb_);
  }
  bool set() const { return type_ != nullptr; }
  void fetch() { PyErr_Fetch(&type_, &value_, &tb_); }
  PyObject* restore() {
    PyErr_Restore(type_, value_, tb_);
    type_ = value_ = tb_ = nullptr;
    return nullptr;
  }

 private:
  PyObject* type_ = nullptr;
  PyObject* value_ = nullptr;
  PyObject* tb_ = nullptr;
};

// Calls progress(done, total); false (exception kept in `error`) if it
// raised or a signal handler did (Ctrl-C cancels like the callback).
bool report(PyObject* progress, uint64_t done, uint64_t total,
            PendingError* error) {
  PyObject* res = PyObject_CallFunction(progress, "KK",
                                        (unsigned long long)done,
                                        (unsigned long long)total);
  if (res == nullptr || PyErr_CheckSignals() < 0) {
    Py_XDECREF(res);
    error->fetch();
    return false;
  }
  Py_DECREF(res);
  return true;
}

// Handles that close themselves, declared in the order they must be
// opened so that scope exit closes images, then pools, then the cluster.
struct ClusterCloser {
  void operator()(void* h) const { rados_shutdown(h); }
};
struct IoctxCloser {
  void operator()(void* h) const { rados_ioctx_destroy(h); }
};
struct ImageCloser {
  void operator()(void* h) const { rbd_close(h); }
};
struct OptionsCloser {
  void operator()(void* h) const { rbd_image_options_destroy(h); }
};
using ClusterPtr = std::unique_ptr<void, ClusterCloser>;
using IoctxPtr = std::unique_ptr<void, IoctxCloser>;
using ImagePtr = std::unique_ptr<void, ImageCloser>;
using OptionsPtr = std::unique_ptr<void, OptionsCloser>;

// What the front end's ClusterSpec carries, as parsed from its tuple.
struct ConnParams {
  const char* conf = nullptr;  // nullptr: librados' default search
  const char* cluster = nullptr;
  const char* user = nullptr;
  const char* keyring = nullptr;  // nullptr: whatever the conf says
  unsigned int timeouts[3] = {0, 0, 0};  // whole seconds: librados
};

const char* const kTimeoutOptions[3] = {
    "client_mount_timeout", "rados_mon_op_timeout", "rados_osd_op_timeout"};

// A connection of our own (C API: librbd's C API needs rados_t/ioctx_t;
// the C++ IoCtx for copy_from is derived from the C one).  Call without
// the GIL: connecting waits for the monitors.
ClusterPtr connect(const ConnParams& p) {
  std::string name = std::string("client.") + p.user;
  rados_t handle = nullptr;
  int r = rados_create2(&handle, p.cluster, name.c_str(), 0);
  if (r < 0) fail(r, "creating a librados handle for " + name);
  ClusterPtr cluster(handle);
  r = rados_conf_read_file(handle, p.conf);
  if (r < 0) {
    fail(r, std::string("reading Ceph configuration ") +
                (p.conf ? p.conf : "(default search path)"));
  }
  if (p.keyring && (r = rados_conf_set(handle, "keyring", p.keyring)) < 0) {
    fail(r, std::string("setting keyring ") + p.keyring);
  }
  for (int i = 0; i < 3; ++i) {
    if (p.timeouts[i] == 0) continue;  // keep librados' default
    char value[16];
    std::snprintf(value, sizeof value, "%u", p.timeouts[i]);
    if ((r = rados_conf_set(handle, kTimeoutOptions[i], value)) < 0) {
      fail(r, std::string("setting ") + kTimeoutOptions[i]);
    }
  }
  if ((r = rados_connect(handle)) < 0) {
    fail(r, std::string("connecting to Ceph cluster '") + p.cluster +
                "' as " + name);
  }
  return cluster;
}

IoctxPtr open_pool(rados_t cluster, const char* pool, const char* ns) {
  rados_ioctx_t io = nullptr;
  int r = rados_ioctx_create(cluster, pool, &io);
  if (r < 0) fail(r, std::string("opening pool '") + pool + "'");
  IoctxPtr ioctx(io);
  rados_ioctx_set_namespace(io, ns);  // "" is the default namespace
  return ioctx;
}

// A pool named by the caller: its name, or its id (an image's data pool
// is known by id: librbd's data_pool_id()).
struct PoolRef {
  std::string name;  // as given, or "#<id>" for messages
  int64_t id = -1;   // >= 0: open by id
};

// Parses a str or int pool argument (the GIL held).
bool parse_pool(PyObject* value, PoolRef* pool) {
  if (PyLong_Check(value)) {
    pool->id = PyLong_AsLongLong(value);
    if (pool->id < 0) {
      if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "a pool id must be >= 0.");
      }
      return false;
    }
    pool->name = "#" + std::to_string(pool->id);
    return true;
  }
  const char* name = PyUnicode_AsUTF8(value);
  if (name == nullptr) return false;
  pool->name = name;
  return true;
}

IoctxPtr open_pool(rados_t cluster, const PoolRef& pool, const char* ns) {
  if (pool.id < 0) return open_pool(cluster, pool.name.c_str(), ns);
  rados_ioctx_t io = nullptr;
  int r = rados_ioctx_create2(cluster, pool.id, &io);
  if (r < 0) fail(r, "opening pool " + pool.name);
  IoctxPtr ioctx(io);
  rados_ioctx_set_namespace(io, ns);
  return ioctx;
}

std::string object_name(const std::string& prefix, uint64_t index) {
  char suffix[20];
  std::snprintf(suffix, sizeof suffix, ".%016llx", (unsigned long long)index);
  return prefix + suffix;
}

// ---- copy_objects --------------------------------------------------------

// Threads asking objects' extents ahead of the copies (see ObjectCopier).
constexpr unsigned kMaxProbers = 8;
// Answers the probers may hold ahead of the copies, per op in flight.
constexpr size_t kProbedAhead = 4;

// Keeps up to `depth` ops in flight, working through the object numbers
// it was given (the caller lists the objects that exist, so the work
// follows the data, not the image's size), from the calling thread,
// which must not hold the GIL while in step() or join().
//
// By default every object is copied whole by one copy_from op: the
// destination's OSD reads it from the source's and nothing crosses this
// host, but a hole inside the object costs what data would (copy_from
// reads it as zeros and writes them, and the copy takes room for them).
// With `through_host_below` > 0 or `keep_holes`, threads of its own first
// ask each object's extents (mapext: the OSD answers from its allocation
// metadata and reads no data).  An object holding less data than
// `through_host_below` is copied through this host, its data only, as
// librbd's own copies do: one read op (stat + sparse_read), then one
// write op writing each extent and setting the object's size.  With
// `keep_holes`, an object copied whole whose extents leave holes below
// its last byte of data has its copy_from op zero each hole after it,
// in the same op (the OSD frees the room the zeros took, in the
// transaction that wrote them): the copy takes the room the source
// does.  An object whose extents its OSD does not say (mapext fails:
// EOPNOTSUPP on an erasure-coded pool) is copied whole, holes and all.
// Memory: up to `depth` objects' data.
class ObjectCopier {
 public:
  // kCopyZero: copy_from, then the zeroing of the object's holes, in
  // one op.
  enum class Stage { kCopy, kCopyZero, kRead, kWrite };

  // A range of an object: offset, length.
  using Holes = std::vector<std::pair<uint64_t, uint64_t>>;

  struct Slot {
    ObjectCopier* owner;
    uint64_t index;
    Stage stage;
    librados::AioCompletion* completion;
    uint64_t size;
    time_t mtime;
    int stat_rval, read_rval;
    std::map<uint64_t, uint64_t> extents;
    librados::bufferlist data, unused;
    uint64_t hole_bytes;  // zeroed after copy_from (kCopyZero)
  };

  // What a prober learnt of one object: mapext's result, its bytes of
  // data (the extents' lengths summed) and the holes between them.
  struct Probe {
    uint64_t index;
    int r;
    uint64_t data;
    Holes holes;
  };

  ObjectCopier(librados::IoCtx& src, librados::IoCtx& dst,
               std::string src_prefix, std::string dst_prefix,
               std::vector<uint64_t> indexes, unsigned depth,
               uint64_t object_size, uint64_t through_host_below,
               bool keep_holes)
      : src_(src), dst_(dst), src_prefix_(std::move(src_prefix)),
        dst_prefix_(std::move(dst_prefix)), indexes_(std::move(indexes)),
        count_(indexes_.size()), object_size_(object_size),
        through_host_below_(through_host_below), keep_holes_(keep_holes),
        slots_(depth) {
    for (auto& slot : slots_) free_.push_back(&slot);
    finished_.reserve(depth);  // the callback never allocates
    if (probing()) {
      unsigned probers = std::min<uint64_t>({depth, kMaxProbers, count_});
      try {
        for (unsigned i = 0; i < probers; ++i) {
          probers_.emplace_back([this] { probe(); });
        }
      } catch (...) {
        join();  // a thread that would not start: end those that did
        throw;
      }
    }
  }

  // Never return with an op in flight (librados would complete into
  // freed memory) or a prober running.
  ~ObjectCopier() {
    stop();
    while (in_flight_ > 0) step(Clock::now() + kReportInterval);
    join();
  }

  // Issues ops up to the depth, then harvests those that completed (a
  // read issues its write), waiting for one, or for a prober's answer
  // while a slot is free, at most until `until`.
  void step(Clock::time_point until) {
    issue_ready();
    if (in_flight_ == 0 && !awaiting_probes()) return;
    std::vector<Slot*> done;
    {
      std::unique_lock<std::mutex> lock(lock_);
      cond_.wait_until(lock, until, [this] {
        // Stopped, answers are taken no more: waiting for them would
        // spin until the last op in flight completes.
        return !finished_.empty() ||
               (!stopped_ && !free_.empty() && !probed_.empty());
      });
      done.swap(finished_);
      finished_.reserve(slots_.size());
    }
    for (Slot* slot : done) harvest(slot);
  }

  // Waits for the probers to end (after finished(), or after stop()).
  void join() {
    {
      std::lock_guard<std::mutex> lock(lock_);
      stopped_ = true;  // nothing is left to probe, or it is not wanted
    }
    room_.notify_all();
    for (auto& prober : probers_) prober.join();
    probers_.clear();
  }

  void stop() {
    std::lock_guard<std::mutex> lock(lock_);
    stopped_ = true;
    room_.notify_all();
  }
  bool finished() const {
    return in_flight_ == 0 && (is_stopped() || taken_ == count_);
  }
  uint64_t done() const { return copied_ + skipped_; }
  uint64_t copied() const { return copied_; }
  uint64_t skipped() const { return skipped_; }
  // Objects copied through this host, and the bytes of data they held.
  uint64_t through_host() const { return through_host_; }
  // Objects copied whole whose holes were zeroed, and their bytes.
  uint64_t punched() const { return punched_; }
  uint64_t punched_bytes() const { return punched_bytes_; }
  uint64_t host_bytes() const { return host_bytes_; }
  // The object numbers skipped (no source object), in completion order.
  const std::vector<uint64_t>& missing() const { return missing_; }
  // The first failure (not -ENOENT), 0 if none, and the object it hit.
  int error() const { return error_; }
  uint64_t failed_index() const { return failed_index_; }

 private:
  bool is_stopped() const {
    std::lock_guard<std::mutex> lock(lock_);
    return stopped_;
  }

  bool probing() const { return through_host_below_ > 0 || keep_holes_; }

  bool awaiting_probes() const {
    return probing() && taken_ < count_ && !is_stopped();
  }

  // A prober thread: mapext each object in turn, a bounded way ahead.
  void probe() {
    for (;;) {
      uint64_t i;
      {
        std::unique_lock<std::mutex> lock(lock_);
        room_.wait(lock, [this] {
          return stopped_ || probed_.size() < kProbedAhead * slots_.size();
        });
        if (stopped_ || next_probe_ == count_) return;
        i = next_probe_++;
      }
      std::map<uint64_t, uint64_t> extents;
      int r = src_.mapext(object_name(src_prefix_, indexes_[i]), 0,
                          object_size_, extents);
      uint64_t data = 0, end = 0;
      Holes holes;
      for (const auto& [offset, length] : extents) {
        if (offset > end) holes.emplace_back(end, offset - end);
        data += length;
        end = std::max(end, offset + length);
      }
      if (r < 0) holes.clear();
      std::lock_guard<std::mutex> lock(lock_);
      probed_.push_back(
          Probe{indexes_[i], r < 0 ? r : 0, data, std::move(holes)});
      cond_.notify_one();
    }
  }

  static void on_complete(librados::completion_t, void* arg) {
    auto* slot = static_cast<Slot*>(arg);
    ObjectCopier* self = slot->owner;
    // Notify under the lock: once unlocked, the copier may be gone.
    std::lock_guard<std::mutex> lock(self->lock_);
    self->finished_.push_back(slot);
    self->cond_.notify_one();
  }

  // Takes the next objects (probed, when probing) while a slot is free.
  void issue_ready() {
    while (!free_.empty() && taken_ < count_) {
      Probe probe{0, 0, 0, {}};
      {
        std::lock_guard<std::mutex> lock(lock_);
        if (stopped_) return;
        if (!probing()) {
          probe.index = indexes_[taken_];
        } else if (probed_.empty()) {
          return;
        } else {
          probe = std::move(probed_.front());
          probed_.pop_front();
          room_.notify_one();
        }
      }
      ++taken_;
      start(probe);
    }
  }

  void start(Probe& probe) {
    if (probe.r == -ENOENT) {
      ++skipped_;  // no source object: keep the destination thin
      missing_.push_back(probe.index);
      return;
    }
    Slot* slot = free_.back();
    free_.pop_back();
    slot->owner = this;
    slot->index = probe.index;
    // Extents unknown (mapext failed: EOPNOTSUPP on an erasure-coded
    // pool): copy_from copies the object whole, or says what is wrong.
    bool whole = probe.r < 0 || probe.data >= through_host_below_;
    slot->stage = whole ? Stage::kCopy : Stage::kRead;
    slot->hole_bytes = 0;
    if (whole) {
      librados::ObjectWriteOperation op;
      op.copy_from(object_name(src_prefix_, slot->index), src_, 0, 0);
      if (keep_holes_ && !probe.holes.empty()) {
        // The OSD applies these to the copy, in the same transaction:
        // no byte changes, and the room copy_from took for them is
        // freed.  One op, not a second round trip per object.
        for (const auto& [offset, length] : probe.holes) {
          op.zero(offset, length);
          slot->hole_bytes += length;
        }
        slot->stage = Stage::kCopyZero;
      }
      send(slot, &op);
    } else {
      slot->size = 0;
      slot->stat_rval = slot->read_rval = 0;
      slot->extents.clear();
      slot->data.clear();
      slot->unused.clear();
      librados::ObjectReadOperation op;
      op.stat(&slot->size, &slot->mtime, &slot->stat_rval);
      op.sparse_read(0, object_size_, &slot->extents, &slot->data,
                     &slot->read_rval);
      slot->completion =
          librados::Rados::aio_create_completion(slot, on_complete);
      ++g_live_completions;
      int r = src_.aio_operate(object_name(src_prefix_, slot->index),
                               slot->completion, &op, &slot->unused);
      ++in_flight_;
      if (r < 0) record(slot, r);  // never sent: no callback will come
    }
  }

  // Sends a write op of `slot` to its destination object.
  void send(Slot* slot, librados::ObjectWriteOperation* op) {
    slot->completion =
        librados::Rados::aio_create_completion(slot, on_complete);
    ++g_live_completions;
    // FULL_TRY: a full or over-quota destination pool fails the op at
    // once (ENOSPC, EDQUOT) instead of parking it until space appears.
    int r = dst_.aio_operate(object_name(dst_prefix_, slot->index),
                             slot->completion, op,
                             librados::OPERATION_FULL_TRY);
    ++in_flight_;
    if (r < 0) record(slot, r);  // never sent: no callback will come
  }

  void harvest(Slot* slot) {
    // The callback has queued the slot; wait until it has returned too.
    slot->completion->wait_for_complete_and_cb();
    int r = slot->completion->get_return_value();
    if (slot->stage == Stage::kRead && r >= 0) {
      // Each step of the read says how it went: the op may succeed with
      // a sparse read that failed to decode (its map and data empty).
      if (slot->stat_rval < 0) {
        r = slot->stat_rval;
      } else if (slot->read_rval < 0) {
        r = slot->read_rval;
      } else if (slot->size > object_size_) {
        r = -EFBIG;  // data past what was read: never an RBD object
      }
    }
    if (slot->stage != Stage::kRead || r < 0) {
      record(slot, r);
    } else if (is_stopped()) {
      release(slot);  // read, but not to be written any more
      slot->data.clear();
      free_.push_back(slot);
    } else {
      release(slot);
      write_extents(slot);
    }
  }

  // The read's extents, written where they were, and the object's size.
  void write_extents(Slot* slot) {
    librados::ObjectWriteOperation op;
    op.create(false);  // an object without data exists as the source's
    op.truncate(0);    // and one there already keeps nothing of its own
    uint64_t at = 0, end = 0;
    for (const auto& [offset, length] : slot->extents) {
      if (at + length > slot->data.length()) {
        slot->data.clear();  // a sparse read shorter than its map
        free_.push_back(slot);
        fault(slot->index, -EIO);
        return;
      }
      librados::bufferlist piece;
      piece.substr_of(slot->data, at, length);
      op.write(offset, piece);
      at += length;
      end = offset + length;
    }
    if (slot->size > end) op.truncate(slot->size);
    slot->stage = Stage::kWrite;
    host_bytes_ += at;
    send(slot, &op);
  }

  // The slot's op is over: its completion released, not in flight.
  void release(Slot* slot) {
    slot->completion->release();
    --g_live_completions;
    --in_flight_;
  }

  // The slot's last op is over: counts its object and frees the slot.
  void record(Slot* slot, int r) {
    release(slot);
    slot->data.clear();
    free_.push_back(slot);
    if (r >= 0) {
      ++copied_;
      if (slot->stage == Stage::kWrite) ++through_host_;
      if (slot->stage == Stage::kCopyZero) {
        ++punched_;
        punched_bytes_ += slot->hole_bytes;
      }
    } else if (r == -ENOENT && (slot->stage == Stage::kCopy ||
                                slot->stage == Stage::kCopyZero ||
                                slot->stage == Stage::kRead)) {
      ++skipped_;  // no source object: keep the destination thin
      missing_.push_back(slot->index);
    } else {
      fault(slot->index, r);
    }
  }

  void fault(uint64_t index, int r) {
    if (error_ == 0) {
      error_ = r;
      failed_index_ = index;
    }
    stop();
  }

  librados::IoCtx& src_;
  librados::IoCtx& dst_;
  const std::string src_prefix_, dst_prefix_;
  const std::vector<uint64_t> indexes_;
  const uint64_t count_, object_size_, through_host_below_;
  const bool keep_holes_;
  std::vector<Slot> slots_;
  std::vector<Slot*> free_;
  std::vector<uint64_t> missing_;
  uint64_t taken_ = 0, in_flight_ = 0, copied_ = 0, skipped_ = 0;
  uint64_t through_host_ = 0, host_bytes_ = 0;
  uint64_t punched_ = 0, punched_bytes_ = 0;
  uint64_t failed_index_ = 0;
  int error_ = 0;
  std::vector<std::thread> probers_;
  mutable std::mutex lock_;
  std::condition_variable cond_;   // an op finished, or an answer came
  std::condition_variable room_;   // probed_ has room, or stopped_
  // Guarded by lock_:
  bool stopped_ = false;
  uint64_t next_probe_ = 0;
  std::deque<Probe> probed_;
  std::vector<Slot*> finished_;
};

bool parse_conn(PyObject* tuple, ConnParams* p) {
  return PyArg_ParseTuple(tuple, "zsszIII;cluster must be a 7-tuple",
                          &p->conf, &p->cluster, &p->user, &p->keyring,
                          &p->timeouts[0], &p->timeouts[1],
                          &p->timeouts[2]);
}

PyObject* raise_ceph_error(const CephError& e) {
  PyObject* args = Py_BuildValue("(is)", e.err, e.what.c_str());
  if (args) {
    PyErr_SetObject(PyExc_OSError, args);  // picks the errno's subclass
    Py_DECREF(args);
  }
  return nullptr;
}

// The object numbers to copy, from a buffer of native uint64s (the front
// end passes an array('Q')), copied out so the GIL can be released.
bool parse_indexes(PyObject* value, std::vector<uint64_t>* indexes) {
  Py_buffer view;
  if (PyObject_GetBuffer(value, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) <
      0) {
    return false;
  }
  bool ok = view.itemsize == sizeof(uint64_t) && view.format != nullptr &&
            (std::strcmp(view.format, "Q") == 0 ||
             std::strcmp(view.format, "L") == 0 ||
             std::strcmp(view.format, "=Q") == 0);
  if (ok) {
    indexes->resize(view.len / sizeof(uint64_t));
    std::memcpy(indexes->data(), view.buf, view.len);
  } else {
    PyErr_SetString(PyExc_TypeError,
                    "objects must be a buffer of uint64 (array('Q')).");
  }
  PyBuffer_Release(&view);
  return ok;
}

PyObject* to_list(const std::vector<uint64_t>& numbers) {
  PyObject* list = PyList_New(numbers.size());
  if (list == nullptr) return nullptr;
  for (size_t i = 0; i < numbers.size(); ++i) {
    PyObject* item = PyLong_FromUnsignedLongLong(numbers[i]);
    if (item == nullptr) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, i, item);
  }
  return list;
}

PyObject* copy_objects(PyObject*, PyObject* args) {
  PyObject *conn_args, *progress, *src_arg, *dst_arg, *indexes_arg;
  ConnParams conn;
  const char *src_ns, *src_prefix, *dst_ns, *dst_prefix;
  PoolRef src_pool, dst_pool;
  std::vector<uint64_t> indexes;
  unsigned int depth;
  unsigned long long object_size, through_host_below;
  int keep_holes;
  if (!PyArg_ParseTuple(args, "OOssOssOIKKpO", &conn_args, &src_arg,
                        &src_ns, &src_prefix, &dst_arg, &dst_ns,
                        &dst_prefix, &indexes_arg, &depth, &object_size,
                        &through_host_below, &keep_holes, &progress) ||
      !parse_conn(conn_args, &conn) || !parse_pool(src_arg, &src_pool) ||
      !parse_pool(dst_arg, &dst_pool) ||
      !parse_indexes(indexes_arg, &indexes)) {
    return nullptr;
  }
  if (depth == 0) {
    PyErr_SetString(PyExc_ValueError, "queue_depth must be at least 1.");
    return nullptr;
  }
  if (through_host_below > object_size) {
    PyErr_SetString(PyExc_ValueError,
                    "through_host_below must not exceed object_size.");
    return nullptr;
  }
  if (keep_holes && object_size == 0) {
    PyErr_SetString(PyExc_ValueError, "keep_holes needs the object_size.");
    return nullptr;
  }
  const uint64_t count = indexes.size();
  PendingError cancelled;
  uint64_t copied = 0, skipped = 0, through_host = 0, host_bytes = 0;
  uint64_t punched = 0, punched_bytes = 0;
  std::vector<uint64_t> missing;
  try {
    ClusterPtr cluster;
    IoctxPtr src_io, dst_io;
    {
      NoGil nogil;
      cluster = connect(conn);
      src_io = open_pool(cluster.get(), src_pool, src_ns);
      dst_io = open_pool(cluster.get(), dst_pool, dst_ns);
    }
    librados::IoCtx src, dst;  // references to the C ioctxs above
    librados::IoCtx::from_rados_ioctx_t(src_io.get(), src);
    librados::IoCtx::from_rados_ioctx_t(dst_io.get(), dst);
    int error;
    uint64_t failed;
    {
      ObjectCopier copier(src, dst, src_prefix, dst_prefix,
                          std::move(indexes), depth, object_size,
                          through_host_below, keep_holes != 0);
      Reports reports;
      for (;;) {
        {
          NoGil nogil;
          copier.step(reports.until());
          if (copier.finished()) copier.join();
        }
        if (copier.finished()) break;
        if (reports.due(copier.done()) && !cancelled.set() &&
            !report(progress, copier.done(), count, &cancelled)) {
          copier.stop();  // in-flight ops are still waited for
        }
      }
      copied = copier.copied();
      skipped = copier.skipped();
      through_host = copier.through_host();
      host_bytes = copier.host_bytes();
      punched = copier.punched();
      punched_bytes = copier.punched_bytes();
      missing = copier.missing();
      error = copier.error();
      failed = copier.failed_index();
    }
    if (cancelled.set()) return cancelled.restore();
    if (error) {
      fail(error, "copying object '" + object_name(src_prefix, failed) +
                      "' of pool '" + src_pool.name + "' to '" +
                      object_name(dst_prefix, failed) + "' of pool '" +
                      dst_pool.name + "'");
    }
  } catch (const CephError& e) {
    return raise_ceph_error(e);
  } catch (const std::exception& e) {
    PyErr_Format(PyExc_RuntimeError, "copy_objects: %s", e.what());
    return nullptr;
  }
  if (!report(progress, copied + skipped, count, &cancelled)) {
    return cancelled.restore();
  }
  PyObject* missing_list = to_list(missing);
  if (missing_list == nullptr) return nullptr;
  return Py_BuildValue("(KKNKKKK)", (unsigned long long)copied,
                       (unsigned long long)skipped, missing_list,
                       (unsigned long long)through_host,
                       (unsigned long long)host_bytes,
                       (unsigned long long)punched,
                       (unsigned long long)punched_bytes);
}

// ---- object_numbers ------------------------------------------------------

// The number of object `name` if it is "<prefix>.<16 hex digits>".
bool object_number(const char* name, const std::string& prefix,
                   uint64_t* number) {
  if (std::strncmp(name, prefix.c_str(), prefix.size()) != 0) return false;
  const char* digits = name + prefix.size();
  if (*digits++ != '.' || std::strlen(digits) != 16) return false;
  uint64_t n = 0;
  for (const char* p = digits; *p; ++p) {
    int v = (*p >= '0' && *p <= '9')   ? *p - '0'
            : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10
                                       : -1;
    if (v < 0) return false;
    n = n << 4 | (uint64_t)v;
  }
  *number = n;
  return true;
}

// Closes a pool listing on every path out.
struct ListCloser {
  void operator()(void* h) const { rados_nobjects_list_close(h); }
};

// Lists the pool (one namespace) for "<prefix>.%016x" objects.  A listing
// walks every object of the pool, so its cost follows the pool, not the
// image: the caller prefers an image's object map where it has one.
PyObject* object_numbers(PyObject*, PyObject* args) {
  PyObject *conn_args, *pool_arg;
  ConnParams conn;
  const char *ns, *prefix_arg;
  PoolRef pool;
  if (!PyArg_ParseTuple(args, "OOss", &conn_args, &pool_arg, &ns,
                        &prefix_arg) ||
      !parse_conn(conn_args, &conn) || !parse_pool(pool_arg, &pool)) {
    return nullptr;
  }
  const std::string prefix(prefix_arg);
  std::vector<uint64_t> numbers;
  try {
    ClusterPtr cluster;
    IoctxPtr io;
    std::unique_ptr<void, ListCloser> listing;
    {
      NoGil nogil;
      cluster = connect(conn);
      io = open_pool(cluster.get(), pool, ns);
      rados_list_ctx_t ctx = nullptr;
      int r = rados_nobjects_list_open(io.get(), &ctx);
      if (r < 0) fail(r, "listing pool " + pool.name);
      listing.reset(ctx);
    }
    for (bool more = true; more;) {
      {
        NoGil nogil;
        auto until = Clock::now() + kReportInterval;
        while (Clock::now() < until) {
          const char *entry = nullptr, *key = nullptr, *space = nullptr;
          int r = rados_nobjects_list_next(listing.get(), &entry, &key,
                                           &space);
          if (r == -ENOENT) {
            more = false;
            break;
          }
          if (r < 0) fail(r, "listing pool " + pool.name);
          uint64_t number;
          if (object_number(entry, prefix, &number)) {
            numbers.push_back(number);
          }
        }
      }
      if (PyErr_CheckSignals() < 0) return nullptr;  // Ctrl-C
    }
  } catch (const CephError& e) {
    return raise_ceph_error(e);
  } catch (const std::exception& e) {
    PyErr_Format(PyExc_RuntimeError, "object_numbers: %s", e.what());
    return nullptr;
  }
  std::sort(numbers.begin(), numbers.end());
  return to_list(numbers);
}

// ---- object_checksums ----------------------------------------------------

// xxHash's XXH64 (Yann Collet's reference algorithm), as the OSD computes
// it for LIBRADOS_CHECKSUM_TYPE_XXHASH64: the caller hashes zeros with it
// to tell an object of zeros from a hole without reading it.
constexpr uint64_t kP1 = 11400714785074694791ULL;
constexpr uint64_t kP2 = 14029467366897019727ULL;
constexpr uint64_t kP3 = 1609587929392839161ULL;
constexpr uint64_t kP4 = 9650029242287828579ULL;
constexpr uint64_t kP5 = 2870177450012600261ULL;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];  // little-endian
  return v;
}
inline uint32_t read32(const unsigned char* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 |
         uint32_t(p[3]) << 24;
}
inline uint64_t xxh_round(uint64_t acc, uint64_t input) {
  return rotl(acc + input * kP2, 31) * kP1;
}
inline uint64_t xxh_merge(uint64_t acc, uint64_t val) {
  return (acc ^ xxh_round(0, val)) * kP1 + kP4;
}

uint64_t xxh64(const unsigned char* p, size_t len, uint64_t seed) {
  const unsigned char* const end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v[4] = {seed + kP1 + kP2, seed + kP2, seed, seed - kP1};
    for (; p + 32 <= end; p += 32) {
      for (int i = 0; i < 4; ++i) v[i] = xxh_round(v[i], read64(p + 8 * i));
    }
    h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18);
    for (uint64_t lane : v) h = xxh_merge(h, lane);
  } else {
    h = seed + kP5;
  }
  h += len;
  for (; p + 8 <= end; p += 8) {
    h = rotl(h ^ xxh_round(0, read64(p)), 27) * kP1 + kP4;
  }
  if (p + 4 <= end) {
    h = rotl(h ^ (uint64_t(read32(p)) * kP1), 23) * kP2 + kP3;
    p += 4;
  }
  for (; p < end; ++p) h = rotl(h ^ (*p * kP5), 11) * kP1;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  return h ^ (h >> 32);
}

// One object's answer: absent, or its size and the XXH64 of its bytes.
struct ObjectSum {
  bool present = false;
  uint64_t size = 0;
  uint64_t hash = 0;
};

// Keeps up to `depth` stat+checksum read ops in flight, from the calling
// thread, which must not hold the GIL in step() or the destructor.  Each
// OSD reads and hashes its own object: only 8-byte answers come back.
class ObjectHasher {
 public:
  struct Slot {
    ObjectHasher* owner;
    uint64_t position;  // in the hasher's indexes
    librados::AioCompletion* completion;
    uint64_t size;
    time_t mtime;
    int stat_rval, sum_rval;
    librados::bufferlist sum, unused;
  };

  // Hashes the objects numbered `indexes`, in that order; sums() answers
  // per position in it.
  ObjectHasher(librados::IoCtx& io, std::string prefix,
               std::vector<uint64_t> indexes, unsigned depth)
      : io_(io), prefix_(std::move(prefix)), indexes_(std::move(indexes)),
        count_(indexes_.size()), slots_(depth), sums_(count_) {
    for (auto& slot : slots_) free_.push_back(&slot);
    finished_.reserve(depth);  // the callback never allocates
    encode_seed();
  }

  // Never return with an op in flight: librados would complete into
  // freed memory.
  ~ObjectHasher() {
    stop();
    while (in_flight_ > 0) step(Clock::now() + kReportInterval);
  }

  void step(Clock::time_point until) {
    while (!stopped_ && next_ < count_ && !free_.empty()) issue();
    if (in_flight_ == 0) return;
    std::vector<Slot*> done;
    {
      std::unique_lock<std::mutex> lock(lock_);
      cond_.wait_until(lock, until, [this] { return !finished_.empty(); });
      done.swap(finished_);
      finished_.reserve(slots_.size());
    }
    for (Slot* slot : done) harvest(slot);
  }

  void stop() { stopped_ = true; }
  bool finished() const {
    return in_flight_ == 0 && (stopped_ || next_ == count_);
  }
  uint64_t done() const { return done_; }
  const std::vector<ObjectSum>& sums() const { return sums_; }
  int error() const { return error_; }
  uint64_t failed_index() const { return failed_index_; }

 private:
  void encode_seed() {
    char seed[8] = {0};  // XXH64's seed 0, little-endian
    seed_.append(seed, sizeof seed);
  }

  static void on_complete(librados::completion_t, void* arg) {
    auto* slot = static_cast<Slot*>(arg);
    ObjectHasher* self = slot->owner;
    std::lock_guard<std::mutex> lock(self->lock_);
    self->finished_.push_back(slot);
    self->cond_.notify_one();
  }

  void issue() {
    Slot* slot = free_.back();
    free_.pop_back();
    slot->owner = this;
    slot->position = next_++;
    slot->size = 0;
    slot->stat_rval = slot->sum_rval = 0;
    slot->sum.clear();
    slot->unused.clear();
    slot->completion =
        librados::Rados::aio_create_completion(slot, on_complete);
    ++g_live_completions;
    librados::ObjectReadOperation op;
    op.stat(&slot->size, &slot->mtime, &slot->stat_rval);
    // Offset and length 0: the whole object, one XXH64 for it.
    op.checksum(LIBRADOS_CHECKSUM_TYPE_XXHASH64, seed_, 0, 0, 0, &slot->sum,
                &slot->sum_rval);
    int r = io_.aio_operate(object_name(prefix_, indexes_[slot->position]),
                            slot->completion, &op, &slot->unused);
    ++in_flight_;
    if (r < 0) record(slot, r);  // never sent: no callback will come
  }

  void harvest(Slot* slot) {
    slot->completion->wait_for_complete_and_cb();
    record(slot, slot->completion->get_return_value());
  }

  // The checksum's answer: a little-endian u32 count, then count u64s
  // (none for an empty object).
  int decode(Slot* slot, ObjectSum* sum) {
    sum->present = true;
    sum->size = slot->size;
    std::string raw = slot->sum.to_str();
    const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
    if (raw.size() < 4) return -EIO;
    uint32_t count = read32(p);
    if (count == 0) {
      if (slot->size != 0) return -EIO;
      sum->present = false;  // an empty object reads as a hole
      return 0;
    }
    if (count != 1 || raw.size() < 12) return -EIO;
    sum->hash = read64(p + 4);
    return 0;
  }

  void record(Slot* slot, int r) {
    slot->completion->release();
    --g_live_completions;
    --in_flight_;
    free_.push_back(slot);
    if (r >= 0 && slot->stat_rval < 0) r = slot->stat_rval;
    if (r >= 0 && slot->sum_rval < 0) r = slot->sum_rval;
    if (r >= 0) r = decode(slot, &sums_[slot->position]);
    if (r >= 0 || r == -ENOENT) {
      ++done_;  // -ENOENT: no object, a hole
    } else if (error_ == 0) {
      error_ = r;
      failed_index_ = indexes_[slot->position];
      stopped_ = true;
    }
  }

  librados::IoCtx& io_;
  const std::string prefix_;
  const std::vector<uint64_t> indexes_;
  const uint64_t count_;
  std::vector<Slot> slots_;
  std::vector<Slot*> free_;
  std::vector<ObjectSum> sums_;
  librados::bufferlist seed_;
  uint64_t next_ = 0, in_flight_ = 0, done_ = 0, failed_index_ = 0;
  int error_ = 0;
  bool stopped_ = false;
  std::mutex lock_;
  std::condition_variable cond_;
  std::vector<Slot*> finished_;  // guarded by lock_
};

// [None or (size, xxhash64)] for object_checksums' answer.
PyObject* sums_to_list(const std::vector<ObjectSum>& sums) {
  PyObject* list = PyList_New(sums.size());
  if (list == nullptr) return nullptr;
  for (size_t i = 0; i < sums.size(); ++i) {
    PyObject* item;
    if (sums[i].present) {
      item = Py_BuildValue("(KK)", (unsigned long long)sums[i].size,
                           (unsigned long long)sums[i].hash);
      if (item == nullptr) {
        Py_DECREF(list);
        return nullptr;
      }
    } else {
      Py_INCREF(Py_None);
      item = Py_None;
    }
    PyList_SET_ITEM(list, i, item);
  }
  return list;
}

PyObject* object_checksums(PyObject*, PyObject* args) {
  PyObject *conn_args, *progress, *pool_arg, *objects;
  ConnParams conn;
  const char *ns, *prefix;
  PoolRef pool;
  std::vector<uint64_t> indexes;
  unsigned int depth;
  if (!PyArg_ParseTuple(args, "OOssOIO", &conn_args, &pool_arg, &ns, &prefix,
                        &objects, &depth, &progress) ||
      !parse_conn(conn_args, &conn) || !parse_pool(pool_arg, &pool) ||
      !parse_indexes(objects, &indexes)) {
    return nullptr;
  }
  const uint64_t count = indexes.size();
  if (depth == 0) {
    PyErr_SetString(PyExc_ValueError, "queue_depth must be at least 1.");
    return nullptr;
  }
  PendingError cancelled;
  std::vector<ObjectSum> sums;
  try {
    ClusterPtr cluster;
    IoctxPtr raw_io;
    {
      NoGil nogil;
      cluster = connect(conn);
      raw_io = open_pool(cluster.get(), pool, ns);
    }
    librados::IoCtx io;
    librados::IoCtx::from_rados_ioctx_t(raw_io.get(), io);
    int error;
    uint64_t failed;
    {
      ObjectHasher hasher(io, prefix, std::move(indexes), depth);
      Reports reports;
      for (;;) {
        {
          NoGil nogil;
          hasher.step(reports.until());
        }
        if (hasher.finished()) break;
        if (reports.due(hasher.done()) && !cancelled.set() &&
            !report(progress, hasher.done(), count, &cancelled)) {
          hasher.stop();
        }
      }
      error = hasher.error();
      failed = hasher.failed_index();
      if (!cancelled.set() && !error) sums = hasher.sums();
    }
    if (cancelled.set()) return cancelled.restore();
    if (error) {
      fail(error, "checksumming object '" + object_name(prefix, failed) +
                      "' of pool '" + pool.name + "'");
    }
  } catch (const CephError& e) {
    return raise_ceph_error(e);
  } catch (const std::exception& e) {
    PyErr_Format(PyExc_RuntimeError, "object_checksums: %s", e.what());
    return nullptr;
  }
  if (!report(progress, count, count, &cancelled)) return cancelled.restore();
  return sums_to_list(sums);
}

PyObject* xxhash64(PyObject*, PyObject* args) {
  Py_buffer data;
  unsigned long long seed;
  if (!PyArg_ParseTuple(args, "y*K", &data, &seed)) return nullptr;
  uint64_t h;
  {
    NoGil nogil;  // megabytes of zeros take a while
    h = xxh64(static_cast<const unsigned char*>(data.buf), data.len, seed);
  }
  PyBuffer_Release(&data);
  return PyLong_FromUnsignedLongLong(h);
}

// ---- copy_image ----------------------------------------------------------

// What librbd's progress callback shares with the calling thread.
struct ImageProgress {
  std::mutex lock;
  std::condition_variable cond;
  uint64_t offset = 0, total = 0;
  bool finished = false;
  int ret = 0;
  std::atomic<bool> cancel{false};
};

// On a librbd thread: record, never call Python; ask librbd to stop.
int on_image_progress(uint64_t offset, uint64_t total, void* arg) {
  auto* p = static_cast<ImageProgress*>(arg);
  {
    std::lock_guard<std::mutex> lock(p->lock);
    p->offset = offset;
    p->total = total;
  }
  // Reporting each change (a test's cancel at a known point): wake the
  // reporter now, not at its next look.
  if (g_report_interval_us.load() == 0) p->cond.notify_all();
  return p->cancel.load() ? -ECANCELED : 0;
}

void set_option(rbd_image_options_t opts, int option, PyObject* value,
                const char* name) {
  if (value == Py_None) return;  // unset: librbd uses the source's
  unsigned long long v = PyLong_AsUnsignedLongLong(value);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) throw PythonError{};
  int r = rbd_image_options_set_uint64(opts, option, v);
  if (r < 0) fail(r, std::string("setting image option ") + name);
}

// librbd (Pacific) ignores -ECANCELED from the progress callback of copy
// and deep copy, so cancelling fences our own, private connection: once
// the OSDs see it blocklisted, librbd's next op fails and its copy
// returns.  Returns the address blocklisted ("" if that failed, e.g. for
// want of the 'osd blocklist' mon cap: the copy then runs to its end).
std::string fence(rados_t cluster) {
  char* addrs = nullptr;
  if (rados_getaddrs(cluster, &addrs) < 0) return "";
  std::string addr(addrs);
  std::free(addrs);
  return rados_blocklist_add(cluster, &addr[0], kFenceSeconds) < 0 ? ""
                                                                  : addr;
}

// Lifts the fence (the entry would expire by itself, kFenceSeconds on).
void unfence(rados_t cluster, const std::string& addr) {
  if (addr.empty()) return;
  std::string cmd = "{\"prefix\": \"osd blocklist\", "
                    "\"blocklistop\": \"rm\", \"addr\": \"" + addr + "\"}";
  const char* cmds[] = {cmd.c_str()};
  char *out = nullptr, *status = nullptr;
  size_t out_len = 0, status_len = 0;
  rados_mon_command(cluster, cmds, 1, "", 0, &out, &out_len, &status,
                    &status_len);
  rados_buffer_free(out);
  rados_buffer_free(status);
}

// Joins the librbd thread on every path out of copy_image.
class Joiner {
 public:
  explicit Joiner(std::thread& t) : thread_(t) {}
  ~Joiner() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread& thread_;
};

PyObject* copy_image(PyObject*, PyObject* args) {
  PyObject *conn_args, *features, *order, *stripe_unit, *stripe_count,
      *progress;
  ConnParams conn;
  const char *src_pool, *src_ns, *src_name, *src_snap, *dst_pool, *dst_ns,
      *dst_name, *data_pool;
  int deep;
  unsigned long long sparse_size;
  if (!PyArg_ParseTuple(args, "OsssssssOOOOzKpO", &conn_args, &src_pool,
                        &src_ns, &src_name, &src_snap, &dst_pool, &dst_ns,
                        &dst_name, &features, &order, &stripe_unit,
                        &stripe_count, &data_pool, &sparse_size, &deep,
                        &progress) ||
      !parse_conn(conn_args, &conn)) {
    return nullptr;
  }
  if (!*src_snap) src_snap = nullptr;  // "" is the head
  const std::string what = std::string(deep ? "deep-copying" : "copying") +
                           " image '" + src_pool + "/" + src_name +
                           "' to '" + dst_pool + "/" + dst_name + "'";
  PendingError cancelled;
  ImageProgress prog;
  try {
    rbd_image_options_t raw_opts;
    rbd_image_options_create(&raw_opts);
    OptionsPtr opts(raw_opts);
    set_option(raw_opts, RBD_IMAGE_OPTION_FEATURES, features, "features");
    set_option(raw_opts, RBD_IMAGE_OPTION_ORDER, order, "order");
    set_option(raw_opts, RBD_IMAGE_OPTION_STRIPE_UNIT, stripe_unit,
               "stripe_unit");
    set_option(raw_opts, RBD_IMAGE_OPTION_STRIPE_COUNT, stripe_count,
               "stripe_count");
    int r;
    if (data_pool && (r = rbd_image_options_set_string(
                          raw_opts, RBD_IMAGE_OPTION_DATA_POOL,
                          data_pool)) < 0) {
      fail(r, "setting image option data_pool");
    }
    ClusterPtr cluster;
    IoctxPtr src_io, dst_io;
    ImagePtr image;
    {
      NoGil nogil;
      cluster = connect(conn);
      src_io = open_pool(cluster.get(), src_pool, src_ns);
      dst_io = open_pool(cluster.get(), dst_pool, dst_ns);
      rbd_image_t raw_image = nullptr;
      r = rbd_open_read_only(src_io.get(), src_name, &raw_image, src_snap);
      if (r < 0) {
        fail(r, std::string("opening image '") + src_pool + "/" +
                    src_name + (src_snap ? "@" : "") +
                    (src_snap ? src_snap : "") + "'");
      }
      image.reset(raw_image);
    }
    // librbd's copy blocks until done: run it on a thread of ours while
    // this one reports progress and watches for cancellation.
    std::thread worker([&] {
      int ret = deep ? rbd_deep_copy_with_progress(
                           image.get(), dst_io.get(), dst_name, opts.get(),
                           on_image_progress, &prog)
                     : rbd_copy_with_progress4(
                           image.get(), dst_io.get(), dst_name, opts.get(),
                           on_image_progress, &prog, sparse_size);
      std::lock_guard<std::mutex> lock(prog.lock);
      prog.ret = ret;
      prog.finished = true;
      prog.cond.notify_all();
    });
    Joiner joiner(worker);
    uint64_t reported[2] = {~0ULL, ~0ULL};
    std::string fenced;
    const Reports reports;  // librbd's own progress is reported on change
    for (;;) {
      uint64_t offset, total;
      bool finished;
      {
        NoGil nogil;
        std::unique_lock<std::mutex> lock(prog.lock);
        prog.cond.wait_for(lock, reports.wait(), [&] {
          return prog.finished || (reports.each_change() &&
                                   prog.total != 0 &&
                                   prog.offset != reported[0]);
        });
        finished = prog.finished;
        offset = prog.offset;
        total = prog.total;
      }
      if (finished) break;
      if (cancelled.set()) continue;
      bool go_on;
      // total == 0: librbd has not reported yet.
      if (total != 0 && (offset != reported[0] || total != reported[1])) {
        reported[0] = offset;
        reported[1] = total;
        go_on = report(progress, offset, total, &cancelled);
      } else {
        go_on = PyErr_CheckSignals() == 0;  // Ctrl-C while librbd is quiet
        if (!go_on) cancelled.fetch();
      }
      if (!go_on) {
        prog.cancel = true;
        NoGil nogil;
        fenced = fence(cluster.get());
      }
    }
    {
      NoGil nogil;
      worker.join();
      unfence(cluster.get(), fenced);
    }
    if (cancelled.set()) return cancelled.restore();
    if (prog.ret < 0) fail(prog.ret, what);
  } catch (const CephError& e) {
    return raise_ceph_error(e);
  } catch (const PythonError&) {
    return nullptr;
  } catch (const std::exception& e) {
    PyErr_Format(PyExc_RuntimeError, "%s: %s", what.c_str(), e.what());
    return nullptr;
  }
  if (!report(progress, prog.total, prog.total, &cancelled)) {
    return cancelled.restore();
  }
  Py_RETURN_NONE;
}

PyObject* set_report_interval(PyObject*, PyObject* args) {
  double seconds;
  if (!PyArg_ParseTuple(args, "d", &seconds)) return nullptr;
  if (!(seconds >= 0 && seconds <= 3600)) {
    PyErr_SetString(PyExc_ValueError,
                    "the report interval is 0 to 3600 seconds.");
    return nullptr;
  }
  long long previous =
      g_report_interval_us.exchange((long long)(seconds * 1e6));
  return PyFloat_FromDouble(previous / 1e6);
}

PyObject* live_completions(PyObject*, PyObject*) {
  return PyLong_FromLong(g_live_completions.load());
}

PyMethodDef kMethods[] = {
    {"copy_objects", copy_objects, METH_VARARGS,
     "copy_from the objects listed; see rbdmig.ext.copy_objects."},
    {"object_numbers", object_numbers, METH_VARARGS,
     "the numbers of an image's objects in a pool, by listing it; see "
     "rbdmig.ext.object_numbers."},
    {"copy_image", copy_image, METH_VARARGS,
     "librbd (deep) copy; see rbdmig.ext.copy_image."},
    {"object_checksums", object_checksums, METH_VARARGS,
     "stat and XXH64 every object at its OSD; see "
     "rbdmig.ext.object_checksums."},
    {"xxhash64", xxhash64, METH_VARARGS,
     "XXH64 of bytes, as the OSDs compute it; see rbdmig.ext.xxhash64."},
    {"live_completions", live_completions, METH_NOARGS,
     "librados completions not yet released (a test hook)."},
    {"set_report_interval", set_report_interval, METH_VARARGS,
     "set_report_interval(seconds) -> the previous one: how often a copy "
     "reports progress, 0.1 s; 0 reports each change of its count (a "
     "test hook: a cancel at a known point)."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT, "rbdmig.ext._offload",
    "Server-side copies for rbdmig.ext (C++, librados and librbd).", -1,
    kMethods,
};

}  // namespace

PyMODINIT_FUNC PyInit__offload(void) { return PyModule_Create(&kModule); }
