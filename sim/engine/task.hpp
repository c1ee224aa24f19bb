// Processes as C++20 coroutines. A Task<T> is a lazily started coroutine; awaiting it from
// another Task runs it as a nested call (symmetric transfer, no event), so a fault handler can
// be a coroutine awaited from a vCPU's coroutine. Every frame knows the Process it runs in.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kvmsim::engine {

class Process;
class Simulator;

namespace detail {
void* frame_alloc(std::size_t n);
void frame_free(void* p, std::size_t n) noexcept;
}  // namespace detail

void root_done(Process* p) noexcept;

struct PromiseBase {
    std::coroutine_handle<> continuation{};
    Process* process = nullptr;
    std::uint32_t pid = 0;  // process->id(), kept here so a wakeup need not touch the Process
    std::exception_ptr exception{};

    static void* operator new(std::size_t n) { return detail::frame_alloc(n); }
    static void operator delete(void* p, std::size_t n) noexcept { detail::frame_free(p, n); }

    std::suspend_always initial_suspend() noexcept { return {}; }
    struct FinalAwaiter {
        bool await_ready() noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            auto c = h.promise().continuation;
            if (c) return c;
            root_done(h.promise().process);  // a process's body ended
            return std::noop_coroutine();
        }
        void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    void unhandled_exception() noexcept { exception = std::current_exception(); }
};

template <class T = void>
class [[nodiscard]] Task;

template <class T>
struct Promise : PromiseBase {
    std::optional<T> value;
    Task<T> get_return_object() noexcept;
    template <class U>
    void return_value(U&& v) { value.emplace(std::forward<U>(v)); }
};

template <>
struct Promise<void> : PromiseBase {
    Task<void> get_return_object() noexcept;
    void return_void() noexcept {}
};

template <class T>
class [[nodiscard]] Task {
public:
    using promise_type = Promise<T>;
    using handle_type = std::coroutine_handle<promise_type>;

    Task() = default;
    explicit Task(handle_type h) : h_(h) {}
    Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Task& operator=(Task&& o) noexcept {
        if (this != &o) {
            if (h_) h_.destroy();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    ~Task() {
        if (h_) h_.destroy();
    }

    bool valid() const { return static_cast<bool>(h_); }
    bool done() const { return h_ && h_.done(); }
    handle_type handle() const { return h_; }

    // Awaiting a Task runs it in the awaiting coroutine's process.
    struct Awaiter {
        handle_type child;
        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
            child.promise().continuation = parent;
            child.promise().process = parent.promise().process;
            child.promise().pid = parent.promise().pid;
            return child;
        }
        T await_resume() {
            auto& p = child.promise();
            if (p.exception) std::rethrow_exception(p.exception);
            if constexpr (!std::is_void_v<T>) return std::move(*p.value);
        }
    };
    Awaiter operator co_await() && noexcept { return Awaiter{h_}; }

private:
    handle_type h_{};
};

template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
    return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}
inline Task<void> Promise<void>::get_return_object() noexcept {
    return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}

// What a blocked process waits on: for the deadlock report.
class WaitTarget {
public:
    virtual ~WaitTarget() = default;
    virtual std::string wait_name() const = 0;
    // Processes that hold the target (a lock's holders); empty for signals and barriers.
    virtual void holders(std::vector<std::pair<const Process*, std::string>>& out) const = 0;
};

class Process {
public:
    enum class State : std::uint8_t { Ready, Waiting, Done };

    Process(std::string name, std::uint32_t id, Task<void> body)
        : name_(std::move(name)), id_(id), body_(std::move(body)) {}

    const std::string& name() const { return name_; }
    std::uint32_t id() const { return id_; }
    State state() const { return state_; }
    bool done() const { return state_ == State::Done; }
    const WaitTarget* waiting_on() const { return waiting_on_; }
    const char* waiting_mode() const { return waiting_mode_; }

    // Used by awaitables: records what the process blocks on (for deadlock reports).
    void block_on(const WaitTarget* t, const char* mode) {
        state_ = State::Waiting;
        waiting_on_ = t;
        waiting_mode_ = mode;
    }
    // Used by whatever wakes a blocked process.
    void unblock() {
        state_ = State::Ready;
        waiting_on_ = nullptr;
    }

private:
    friend class Simulator;
    friend void root_done(Process* p) noexcept;
    Simulator* sim_ = nullptr;
    std::string name_;
    std::uint32_t id_;
    Task<void> body_;
    State state_ = State::Ready;
    const WaitTarget* waiting_on_ = nullptr;
    const char* waiting_mode_ = "";
};

}  // namespace kvmsim::engine
