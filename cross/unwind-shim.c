/* unwind-shim.c - lets Debian's libgcc_eh.a (built for glibc) unwind in static musl binaries.
 *
 * libgcc_eh calls glibc-only _dl_find_object (and __gnu_Unwind_Find_exidx on ARM); both are
 * implemented here on top of musl's dl_iterate_phdr. cross/build.sh archives this object with
 * libgcc_eh.a as libunwind.a, which Rust's musl std links. Needed for `cargo test` (panics
 * unwind) and RUST_BACKTRACE; release builds use panic=abort. */
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <stddef.h>
#include <pthread.h>

struct dl_find_object {
  unsigned long long dlfo_flags;
  void *dlfo_map_start, *dlfo_map_end;
  struct link_map *dlfo_link_map;
  void *dlfo_eh_frame;
  unsigned long long __dlfo_reserved[7];
};

struct q { uintptr_t pc, lo, hi, eh, exidx; int count, found; };

static int cb(struct dl_phdr_info *info, size_t size, void *data) {
  struct q *q = data;
  uintptr_t lo = UINTPTR_MAX, hi = 0, eh = 0, exidx = 0;
  int hit = 0, count = 0;
  (void)size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *p = &info->dlpi_phdr[i];
    uintptr_t s = info->dlpi_addr + p->p_vaddr;
    if (p->p_type == PT_LOAD) {
      if (s < lo) lo = s;
      if (s + p->p_memsz > hi) hi = s + p->p_memsz;
      if (q->pc >= s && q->pc < s + p->p_memsz) hit = 1;
    } else if (p->p_type == PT_GNU_EH_FRAME) {
      eh = s;
    } else if (p->p_type == 0x70000001 /* PT_ARM_EXIDX */) {
      exidx = s;
      count = p->p_memsz / 8;
    }
  }
  if (!hit) return 0;
  q->lo = lo; q->hi = hi; q->eh = eh; q->exidx = exidx; q->count = count; q->found = 1;
  return 1;
}

int _dl_find_object(void *pc, struct dl_find_object *r) {
  struct q q = { (uintptr_t)pc, 0, 0, 0, 0, 0, 0 };
  dl_iterate_phdr(cb, &q);
  if (!q.found) return -1;
  r->dlfo_flags = 0;
  r->dlfo_map_start = (void *)q.lo;
  r->dlfo_map_end = (void *)q.hi;
  r->dlfo_link_map = NULL;
  r->dlfo_eh_frame = (void *)q.eh;
  return 0;
}

/* libgcc_eh reaches these through weak references (gthr-posix.h). In a static link nothing
 * else pulls them out of libc.a (Rust's std uses futexes), so they would stay NULL and the
 * unwinder would jump to address 0. Referencing them here forces them in. */
int __musl_unwind_shim; /* -Wl,-u,__musl_unwind_shim pulls this object out of libunwind.a */
__attribute__((used)) void *const __musl_unwind_keep[] = {
  (void *)pthread_once, (void *)pthread_mutex_lock, (void *)pthread_mutex_unlock,
  (void *)pthread_key_create, (void *)pthread_getspecific, (void *)pthread_setspecific,
};

#ifdef __arm__
uintptr_t __gnu_Unwind_Find_exidx(uintptr_t pc, int *pcount) {
  struct q q = { pc, 0, 0, 0, 0, 0, 0 };
  dl_iterate_phdr(cb, &q);
  *pcount = q.count;
  return q.exidx;
}
#endif
