#pragma once
// Mutexes that clang's thread-safety analysis understands (-Wthread-safety, on in the clang
// build as an error: docs/architecture.md, "Locks"). libstdc++'s std::mutex carries no
// capability attributes, so these are thin wrappers that do, with the scoped lock types the
// analysis needs. With GCC the attributes expand to nothing and the wrappers cost nothing.
//
// Use: a field says which lock guards it (`int n_ GUARDED_BY(mutex_);`), a function that must
// be called with a lock held says so (`void f() REQUIRES(mutex_);`), and code takes locks with
// common::lock / common::shared_lock / common::unique_lock, never by hand.

#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define WSAGENT_TSA(x) __attribute__((x))
#else
#define WSAGENT_TSA(x)
#endif

#define CAPABILITY(x) WSAGENT_TSA(capability(x))
#define SCOPED_CAPABILITY WSAGENT_TSA(scoped_lockable)
#define GUARDED_BY(x) WSAGENT_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) WSAGENT_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) WSAGENT_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) WSAGENT_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) WSAGENT_TSA(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) WSAGENT_TSA(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) WSAGENT_TSA(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) WSAGENT_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) WSAGENT_TSA(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) WSAGENT_TSA(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) WSAGENT_TSA(release_generic_capability(__VA_ARGS__))
#define EXCLUDES(...) WSAGENT_TSA(locks_excluded(__VA_ARGS__))
#define RETURN_CAPABILITY(x) WSAGENT_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS WSAGENT_TSA(no_thread_safety_analysis)

namespace wsagent::common {

class CAPABILITY("mutex") mutex {
 public:
  void lock() ACQUIRE() { m_.lock(); }
  void unlock() RELEASE() { m_.unlock(); }
  bool try_lock() WSAGENT_TSA(try_acquire_capability(true)) { return m_.try_lock(); }

 private:
  std::mutex m_;
};

class CAPABILITY("mutex") shared_mutex {
 public:
  void lock() ACQUIRE() { m_.lock(); }
  void unlock() RELEASE() { m_.unlock(); }
  void lock_shared() ACQUIRE_SHARED() { m_.lock_shared(); }
  void unlock_shared() RELEASE_SHARED() { m_.unlock_shared(); }

 private:
  std::shared_mutex m_;
};

// Holds `m` (exclusive) for its scope.
template <class Mutex>
class SCOPED_CAPABILITY lock {
 public:
  explicit lock(Mutex& m) ACQUIRE(m) : m_(m) { m_.lock(); }
  ~lock() RELEASE() { m_.unlock(); }
  lock(const lock&) = delete;
  lock& operator=(const lock&) = delete;

 private:
  Mutex& m_;
};

// Holds `m` shared for its scope.
class SCOPED_CAPABILITY shared_lock {
 public:
  explicit shared_lock(shared_mutex& m) ACQUIRE_SHARED(m) : m_(m) { m_.lock_shared(); }
  ~shared_lock() RELEASE() { m_.unlock_shared(); }
  shared_lock(const shared_lock&) = delete;
  shared_lock& operator=(const shared_lock&) = delete;

 private:
  shared_mutex& m_;
};

// Holds `m` from construction; may let it go before its scope ends (unlock()) and take it
// again (lock()); a std::condition_variable_any waits on it.
class SCOPED_CAPABILITY unique_lock {
 public:
  explicit unique_lock(mutex& m) ACQUIRE(m) : m_(m) { m_.lock(); }
  void lock() ACQUIRE() {
    m_.lock();
    held_ = true;
  }
  ~unique_lock() RELEASE() {
    if (held_) m_.unlock();
  }
  void unlock() RELEASE() {
    m_.unlock();
    held_ = false;
  }
  unique_lock(const unique_lock&) = delete;
  unique_lock& operator=(const unique_lock&) = delete;

 private:
  mutex& m_;
  bool held_ = true;
};

}  // namespace wsagent::common
