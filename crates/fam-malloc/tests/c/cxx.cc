// C++ operator new and delete on libfam_malloc: every form is the library's (not the C++
// runtime's, which would call malloc), blocks have the alignment asked for, the new handler is
// called and std::bad_alloc thrown when memory cannot be had, the nothrow forms return null, and
// a delete is checked like free.
//
//   cxx            runs the checks, prints "cxx: ok" (preloaded, or linked with the shared library)
//   cxx static     the same, linked with libfam_malloc.a: the forms are the program's own
//   cxx double     deletes a block twice: must be reported and abort
//   cxx interior   deletes a pointer into a block: must be reported and abort
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

static int failures;

#define CHECK(cond)                                                     \
    do {                                                                \
        if (!(cond)) {                                                  \
            std::fprintf(stderr, "cxx.cc:%d: %s\n", __LINE__, #cond);   \
            failures++;                                                 \
        }                                                               \
    } while (0)

static bool linked_statically;

// Whether the function at `f` is the library's: defined in libfam_malloc.so, or (linked with
// the static library) in the program itself, where this function is.
static bool from_fam(const void *f) {
    Dl_info info, program;
    if (dladdr(f, &info) == 0 || info.dli_fname == nullptr) return false;
    if (linked_statically)
        return dladdr(reinterpret_cast<const void *>(&from_fam), &program) != 0 &&
               info.dli_fbase == program.dli_fbase;
    return std::strstr(info.dli_fname, "libfam_malloc") != nullptr;
}

static bool aligned_to(const void *p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

struct alignas(64) Line {
    char bytes[64];
};
struct alignas(4096) Page {
    char bytes[100];
};

static int handler_calls;
static void give_up_after_three() {
    if (++handler_calls == 3) std::set_new_handler(nullptr);
}

// Too large for any allocator: the request fails at once.
static volatile size_t huge = SIZE_MAX / 2;

int main(int argc, char **argv) {
    linked_statically = argc > 1 && std::strcmp(argv[1], "static") == 0;
    if (argc > 1 && !linked_statically) {
        // Misuse: the library must report and abort, never return here.
        char *p = new char[64];
        if (std::strcmp(argv[1], "double") == 0) {
            delete[] p;
            delete[] p;
        } else if (std::strcmp(argv[1], "interior") == 0) {
            operator delete(p + 8);
        }
        std::puts("misuse was not caught");
        return 0;
    }

    // Every replaceable form resolves to the library.
    using New = void *(*)(size_t);
    using NewNothrow = void *(*)(size_t, const std::nothrow_t &);
    using NewAligned = void *(*)(size_t, std::align_val_t);
    using NewAlignedNothrow = void *(*)(size_t, std::align_val_t, const std::nothrow_t &);
    using Delete = void (*)(void *);
    using DeleteSized = void (*)(void *, size_t);
    using DeleteNothrow = void (*)(void *, const std::nothrow_t &);
    using DeleteAligned = void (*)(void *, std::align_val_t);
    using DeleteSizedAligned = void (*)(void *, size_t, std::align_val_t);
    using DeleteAlignedNothrow = void (*)(void *, std::align_val_t, const std::nothrow_t &);
    const void *forms[] = {
        reinterpret_cast<const void *>(static_cast<New>(&::operator new)),
        reinterpret_cast<const void *>(static_cast<New>(&::operator new[])),
        reinterpret_cast<const void *>(static_cast<NewNothrow>(&::operator new)),
        reinterpret_cast<const void *>(static_cast<NewNothrow>(&::operator new[])),
        reinterpret_cast<const void *>(static_cast<NewAligned>(&::operator new)),
        reinterpret_cast<const void *>(static_cast<NewAligned>(&::operator new[])),
        reinterpret_cast<const void *>(static_cast<NewAlignedNothrow>(&::operator new)),
        reinterpret_cast<const void *>(static_cast<NewAlignedNothrow>(&::operator new[])),
        reinterpret_cast<const void *>(static_cast<Delete>(&::operator delete)),
        reinterpret_cast<const void *>(static_cast<Delete>(&::operator delete[])),
        reinterpret_cast<const void *>(static_cast<DeleteSized>(&::operator delete)),
        reinterpret_cast<const void *>(static_cast<DeleteSized>(&::operator delete[])),
        reinterpret_cast<const void *>(static_cast<DeleteNothrow>(&::operator delete)),
        reinterpret_cast<const void *>(static_cast<DeleteNothrow>(&::operator delete[])),
        reinterpret_cast<const void *>(static_cast<DeleteAligned>(&::operator delete)),
        reinterpret_cast<const void *>(static_cast<DeleteAligned>(&::operator delete[])),
        reinterpret_cast<const void *>(static_cast<DeleteSizedAligned>(&::operator delete)),
        reinterpret_cast<const void *>(static_cast<DeleteSizedAligned>(&::operator delete[])),
        reinterpret_cast<const void *>(static_cast<DeleteAlignedNothrow>(&::operator delete)),
        reinterpret_cast<const void *>(static_cast<DeleteAlignedNothrow>(&::operator delete[])),
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        if (!from_fam(forms[i])) {
            std::fprintf(stderr, "cxx.cc: form %zu is not libfam_malloc's\n", i);
            failures++;
        }
    }

    // Plain forms: malloc's alignment for the size; the block is the heap's (usable size known).
    for (size_t n : {1, 8, 16, 24, 32, 100, 1000, 5000, 100000, 3 << 20}) {
        char *p = new char[n];
        CHECK(aligned_to(p, n % 16 == 0 ? 16 : 8));
        CHECK(malloc_usable_size(p) >= n);
        std::memset(p, 0x5a, n);
        delete[] p;
        void *q = ::operator new(n);
        CHECK(q != nullptr);
        ::operator delete(q, n);  // sized
    }

    // Aligned forms, small and large.
    Line *lines = new Line[10];
    CHECK(aligned_to(lines, 64));
    delete[] lines;
    Page *page = new Page;
    CHECK(aligned_to(page, 4096));
    delete page;
    for (size_t a : {32, 256, 4096, 1 << 16, 1 << 21}) {
        void *p = ::operator new(1000, std::align_val_t(a));
        CHECK(aligned_to(p, a));
        ::operator delete(p, 1000, std::align_val_t(a));
        p = ::operator new[](3 << 20, std::align_val_t(a), std::nothrow);
        CHECK(p != nullptr && aligned_to(p, a));
        ::operator delete[](p, std::align_val_t(a), std::nothrow);
    }

    // Containers.
    std::map<int, std::string> m;
    for (int i = 0; i < 20000; i++) m[i * 7 % 20011] = std::to_string(i) + std::string(i % 50, 'x');
    std::vector<std::vector<int>> vs(500);
    for (int i = 0; i < 100000; i++) vs[i % 500].push_back(i);
    size_t total = 0;
    for (auto &kv : m) total += kv.second.size();
    for (auto &v : vs) total += v.size();
    CHECK(m.size() == 20000);
    CHECK(total == 578890 + 100000);

    // Failure: nothrow returns null; the throwing forms throw std::bad_alloc.
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(::operator new[](huge, std::align_val_t(64), std::nothrow) == nullptr);
    bool thrown = false;
    try {
        char *p = new char[huge];
        p[0] = 1;
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);
    thrown = false;
    try {
        void *p = ::operator new(huge, std::align_val_t(128));
        CHECK(p == nullptr);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);

    // The new handler is called until it removes itself, then bad_alloc is thrown.
    std::set_new_handler(give_up_after_three);
    thrown = false;
    try {
        void *p = ::operator new(huge);
        CHECK(p == nullptr);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);
    CHECK(handler_calls == 3);
    handler_calls = 0;
    std::set_new_handler(give_up_after_three);
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(handler_calls == 3);

    if (failures) {
        std::printf("cxx: %d failures\n", failures);
        return 1;
    }
    std::puts("cxx: ok");
    return 0;
}
