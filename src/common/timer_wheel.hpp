#pragma once
// A hashed timing wheel: many coarse deadlines (heartbeats, idle limits, auth and close
// deadlines) kept for the price of two pointers and a time each, with O(1) schedule and
// cancel. One wheel per I/O thread replaces one Asio timer per connection, which cost a
// timer object, a pending operation and a heap slot each (about 300 bytes an idle
// connection, and O(log n) per re-arm).
//
// Time is cut into ticks of `resolution_ms`; an entry due at time T sits in slot
// ceil(T / resolution) % slots and fires on the first advance() to a tick boundary at or
// after T, so a deadline fires late by less than one tick plus the caller's latency in
// calling advance(), never early. Deadlines
// further than one turn of the wheel away stay in their slot and are passed over until due.
//
// Not thread-safe: one owner thread schedules, cancels and advances. An entry must be
// cancelled (or have fired) before it is destroyed; entry's destructor cancels it.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace wsagent::common {

class timer_wheel {
 public:
  class entry {
   public:
    entry() = default;
    entry(const entry&) = delete;
    entry& operator=(const entry&) = delete;
    ~entry() { cancel(); }

    bool scheduled() const noexcept { return next_ != nullptr; }
    std::int64_t due_ms() const noexcept { return due_ms_; }
    void cancel() noexcept {
      if (!next_) return;
      prev_->next_ = next_;
      next_->prev_ = prev_;
      prev_ = next_ = nullptr;
    }

   private:
    friend class timer_wheel;
    void link_before(entry& at) noexcept {
      prev_ = at.prev_;
      next_ = &at;
      at.prev_->next_ = this;
      at.prev_ = this;
    }
    entry* prev_ = nullptr;
    entry* next_ = nullptr;
    std::int64_t due_ms_ = 0;
  };

  timer_wheel(std::int64_t resolution_ms, std::size_t slots, std::int64_t now_ms)
      : resolution_(resolution_ms > 0 ? resolution_ms : 1),
        slots_(slots ? slots : 1),
        tick_(now_ms / resolution_) {
    for (auto& s : slots_)
      s.prev_ = s.next_ = &s;  // empty circular lists around a sentinel
  }
  timer_wheel(const timer_wheel&) = delete;
  timer_wheel& operator=(const timer_wheel&) = delete;
  ~timer_wheel() {
    for (auto& s : slots_)
      while (s.next_ != &s)
        s.next_->cancel();
    for (auto& s : slots_)
      s.prev_ = s.next_ = nullptr;
  }

  std::int64_t resolution_ms() const noexcept { return resolution_; }

  // (Re)schedules `e` to fire at `due_ms`; a time already past fires on the next tick.
  void schedule(entry& e, std::int64_t due_ms) noexcept {
    e.cancel();
    e.due_ms_ = due_ms;
    std::int64_t t = due_ms / resolution_;
    if (due_ms % resolution_) ++t;  // never early
    if (t <= tick_) t = tick_ + 1;
    e.link_before(slot(t));
  }

  // Fires every entry due at or before the last tick boundary at or before `now_ms`: each is
  // unscheduled, then fire(entry&) is called; fire may schedule it (or any other entry) again.
  template <class Fire>
  void advance(std::int64_t now_ms, Fire&& fire) {
    const std::int64_t target = now_ms / resolution_;
    if (target <= tick_) return;
    // After a long pause every slot is visited once.
    const std::int64_t first = target - tick_ > static_cast<std::int64_t>(slots_.size())
                                   ? target - static_cast<std::int64_t>(slots_.size()) + 1
                                   : tick_ + 1;
    const std::int64_t horizon = target * resolution_;  // fire what is due by this tick
    tick_ = target;  // schedule() from inside fire() lands after `target`
    for (std::int64_t t = first; t <= target; ++t) {
      entry& s = slot(t);
      if (s.next_ == &s) continue;
      // Move the slot's entries aside: whatever fire() schedules goes to the real lists.
      entry pending;
      pending.prev_ = s.prev_;
      pending.next_ = s.next_;
      s.prev_->next_ = &pending;
      s.next_->prev_ = &pending;
      s.prev_ = s.next_ = &s;
      while (pending.next_ != &pending) {
        entry& e = *pending.next_;
        e.cancel();
        if (e.due_ms_ <= horizon) {
          fire(e);
        } else {
          e.link_before(s);  // due in a later turn of the wheel
        }
      }
      pending.prev_ = pending.next_ = nullptr;
    }
  }

 private:
  entry& slot(std::int64_t tick) noexcept {
    return slots_[static_cast<std::size_t>(tick) % slots_.size()];
  }

  std::int64_t resolution_;
  std::vector<entry> slots_;  // sentinels
  std::int64_t tick_;         // the last tick advanced to
};

}  // namespace wsagent::common
