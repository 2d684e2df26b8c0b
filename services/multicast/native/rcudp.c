// rcudp: batched UDP datagram I/O for the multicast data plane (Linux, Node-API).
//
// Why it exists (docs/decisions.md, "Multicast: batched datagram I/O"): node:dgram costs ~19 µs of
// CPU per received datagram and ~13 µs per sent one on this machine's kind (a 64 KiB allocation,
// a copy into a fresh Buffer, an rinfo object and a JS callback each), against ~5 µs for the
// kernel's own work. A receiver of a 300 Mbit/s session takes ~26,000 datagrams a second.
//
// Receive: a thread of ours blocks in recvmmsg(2) on the group socket and fills a ring of
// fixed-size slots in memory that JavaScript sees as one Buffer (plus a length and a source
// address per slot). After each batch it wakes the JS thread through a thread-safe function, at
// most one wake-up pending: JS then handles every slot filled so far in one call, and the slots
// go back to the thread when that call returns. The ring also decouples the socket from the JS
// thread: while JS is busy (a GC, a burst of work) datagrams wait in the ring, not in a kernel
// buffer capped by net.core.rmem_max. When the ring is full the thread stops reading and the
// kernel buffer fills (and overflows, counted by the kernel as usual).
//
// Send: sendmmsg(2) of a batch of datagrams packed into one Buffer (offsets and lengths given),
// non-blocking, from a socket connected to the group: one system call per paced burst.
//
// Nothing here parses datagrams: the wire codec stays in TypeScript (wire.ts), and every datagram
// is checked there as before.
#define _GNU_SOURCE
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_SEND 1024

#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      napi_throw_error(env, "RC_ERR_IO", "rcudp: " #call " failed");       \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, "RC_ERR_IO", msg);
  return NULL;
}

// ---------------------------------------------------------------- receive ring

typedef struct {
  int fd;
  uint32_t slots, slot_size;
  uint32_t coalesce_us; // after a batch that emptied the socket, let this long's datagrams gather
  uint8_t *mem;        // ring (slots × slot_size), then lens[slots], then addrs[slots]
  size_t mem_len;
  uint32_t *lens;      // datagram length per slot; slot_size + 1 = truncated (larger than a slot)
  uint32_t *addrs;     // source IPv4 address per slot, network byte order
  _Atomic uint64_t head; // slots filled (written by the thread)
  _Atomic uint64_t tail; // slots handed back (written by the JS thread)
  _Atomic int wake_pending;
  _Atomic int stop;
  _Atomic int waiting; // the thread waits for free slots
  _Atomic uint64_t full_waits, batches, datagrams, truncated, errors;
  int last_errno;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  int thread_started;
  int closed;
  int owners; // the JS handle and the thread-safe function: freed when both are finalized
  napi_threadsafe_function tsfn;
  napi_ref memref; // keeps the ring's ArrayBuffer alive while the thread writes into it
} Rx;

static void *rx_main(void *p) {
  Rx *r = p;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in from[BATCH];
  while (!atomic_load(&r->stop)) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint32_t space = r->slots - (uint32_t)(head - tail);
    if (space == 0) {
      // JS has not handed slots back yet: wait (bounded, so stop is seen)
      atomic_fetch_add(&r->full_waits, 1);
      pthread_mutex_lock(&r->mu);
      atomic_store(&r->waiting, 1);
      while (!atomic_load(&r->stop) &&
             (uint32_t)(atomic_load(&r->head) - atomic_load(&r->tail)) >= r->slots) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
      }
      atomic_store(&r->waiting, 0);
      pthread_mutex_unlock(&r->mu);
      continue;
    }
    uint32_t n = space < BATCH ? space : BATCH;
    for (uint32_t k = 0; k < n; k++) {
      uint32_t slot = (uint32_t)((head + k) % r->slots);
      iov[k].iov_base = r->mem + (size_t)slot * r->slot_size;
      iov[k].iov_len = r->slot_size;
      memset(&msgs[k], 0, sizeof msgs[k]);
      msgs[k].msg_hdr.msg_name = &from[k];
      msgs[k].msg_hdr.msg_namelen = sizeof from[k];
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    // blocks for the first datagram (at most SO_RCVTIMEO), then takes what is already queued
    int got = recvmmsg(r->fd, msgs, n, MSG_WAITFORONE, NULL);
    if (got < 0) {
      int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) continue;
      if (atomic_load(&r->stop)) break;
      atomic_fetch_add(&r->errors, 1);
      r->last_errno = e;
      // an ICMP error queued on the socket and the like: note it and go on; avoid a busy loop
      struct timespec ts = {0, 1000 * 1000};
      nanosleep(&ts, NULL);
      continue;
    }
    // after shutdown() (close) Linux returns one empty datagram, not 0: never count or hand it on
    if (got == 0 || atomic_load(&r->stop)) continue;
    for (int k = 0; k < got; k++) {
      uint32_t slot = (uint32_t)((head + k) % r->slots);
      int trunc = (msgs[k].msg_hdr.msg_flags & MSG_TRUNC) != 0;
      r->lens[slot] = trunc ? r->slot_size + 1 : msgs[k].msg_len;
      r->addrs[slot] = from[k].sin_addr.s_addr;
      if (trunc) atomic_fetch_add(&r->truncated, 1);
    }
    atomic_fetch_add(&r->batches, 1);
    atomic_fetch_add(&r->datagrams, (uint64_t)got);
    atomic_store_explicit(&r->head, head + (uint64_t)got, memory_order_release);
    if (!atomic_exchange(&r->wake_pending, 1)) {
      if (napi_call_threadsafe_function(r->tsfn, NULL, napi_tsfn_nonblocking) != napi_ok) {
        atomic_store(&r->wake_pending, 0); // closing
      }
    }
    // Interrupt coalescing, as a NIC driver does: the socket had no more than this batch, so the
    // next datagrams are still on their way. Waking for each one costs a wake-up of this thread
    // and of the JS thread per datagram; sleeping briefly lets a paced burst gather and arrive
    // in one recvmmsg and one JS call. The kernel buffer holds far more than this sleep's worth.
    if ((uint32_t)got < n && r->coalesce_us) {
      struct timespec ts = {0, (long)r->coalesce_us * 1000};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

// On the JS thread: hand every filled slot to the callback (first slot, count), then free them.
static void rx_call_js(napi_env env, napi_value cb, void *context, void *data) {
  Rx *r = context;
  if (env == NULL || r->closed) return;
  atomic_store(&r->wake_pending, 0);
  uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
  uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
  if (head == tail) return;
  uint32_t count = (uint32_t)(head - tail);
  napi_value argv[2], undef;
  napi_create_uint32(env, (uint32_t)(tail % r->slots), &argv[0]);
  napi_create_uint32(env, count, &argv[1]);
  napi_get_undefined(env, &undef);
  napi_call_function(env, undef, cb, 2, argv, NULL); // an exception is reported as uncaught
  atomic_store_explicit(&r->tail, tail + count, memory_order_release);
  if (atomic_load(&r->waiting)) {
    pthread_mutex_lock(&r->mu);
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
  }
}

// Finalizers of the thread-safe function and of the JS handle (both on the JS thread): a handle
// used after close() must still point at valid memory (rxStats, rxClose again).
static void rx_finalize(napi_env env, void *data, void *hint) {
  Rx *r = data;
  if (--r->owners > 0) return;
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
}

static void mem_finalize(napi_env env, void *data, void *hint) {
  munmap(data, (size_t)(uintptr_t)hint);
}

static int get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return -1;
  return napi_get_value_uint32(env, v, out) == napi_ok ? 0 : -1;
}

static int get_addr(napi_env env, napi_value obj, const char *key, struct in_addr *out) {
  napi_value v;
  char s[64];
  size_t len;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return -1;
  if (napi_get_value_string_utf8(env, v, s, sizeof s, &len) != napi_ok) return -1;
  return inet_pton(AF_INET, s, out) == 1 ? 0 : -1;
}

static Rx *rx_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "RC_ERR_IO", "rcudp: not a receiver handle");
    return NULL;
  }
  return p;
}

// rxOpen({ group, port, iface, rcvbuf, slots, slotSize, coalesceUs }, onBatch(first, count))
//   → { handle, memory: ArrayBuffer, rcvbuf }
static napi_value rx_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) { napi_throw_type_error(env, "RC_ERR_USAGE", "rxOpen(options, onBatch)"); return NULL; }
  struct in_addr group, iface;
  uint32_t port, rcvbuf, slots, slot_size, coalesce_us = 0;
  if (get_addr(env, argv[0], "group", &group) || get_addr(env, argv[0], "iface", &iface) ||
      get_u32(env, argv[0], "port", &port) || get_u32(env, argv[0], "rcvbuf", &rcvbuf) ||
      get_u32(env, argv[0], "slots", &slots) || get_u32(env, argv[0], "slotSize", &slot_size) ||
      port == 0 || port > 65535 || slots < BATCH || slots > (1u << 20) || slot_size < 64 || slot_size > 65536) {
    napi_throw_type_error(env, "RC_ERR_USAGE", "rxOpen: group, iface (IPv4), port, rcvbuf, slots (>= 64), slotSize (64..65536)");
    return NULL;
  }
  bool has = false;
  napi_has_named_property(env, argv[0], "coalesceUs", &has);
  if (has && (get_u32(env, argv[0], "coalesceUs", &coalesce_us) || coalesce_us > 100000)) {
    napi_throw_type_error(env, "RC_ERR_USAGE", "rxOpen: coalesceUs 0..100000");
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  int rb = (int)rcvbuf;
  struct timeval tv = {0, 200 * 1000}; // the thread looks at `stop` at least this often
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr = group; // bound to the group: only its datagrams arrive here (as node:dgram's bind(port, group))
  struct ip_mreq mr = {0};
  mr.imr_multiaddr = group;
  mr.imr_interface = iface;
  const char *what = NULL;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one)) what = "SO_REUSEADDR";
  else if (bind(fd, (struct sockaddr *)&sa, sizeof sa)) what = "bind";
  else if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr)) what = "IP_ADD_MEMBERSHIP";
  else if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv)) what = "SO_RCVTIMEO";
  if (what) { int e = errno; close(fd); return throw_errno(env, what, e); }
  // SO_RCVBUF is capped by net.core.rmem_max (a host-wide sysctl, often 208 KiB to 4 MiB: at
  // 300 Mbit/s of 1500-byte datagrams the kernel then holds ~150 ms while this process is not
  // scheduled). With CAP_NET_ADMIN (the boot client and the appliance run as root) ask past the
  // cap; without it, take what the cap allows.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb))
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
  int got_rb = 0;
  socklen_t gl = sizeof got_rb;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got_rb, &gl);

  Rx *r = calloc(1, sizeof *r);
  if (!r) { close(fd); return throw_errno(env, "calloc", ENOMEM); }
  r->fd = fd;
  r->owners = 2;
  r->coalesce_us = coalesce_us;
  r->slots = slots;
  r->slot_size = (slot_size + 7u) & ~7u;
  r->mem_len = (size_t)r->slots * r->slot_size + (size_t)r->slots * 8;
  // mapped, not allocated: a slot's pages are touched only as far as its datagrams reach, so a
  // ring with room for 64 KiB datagrams costs ~one page per slot at a 1500-byte MTU
  r->mem = mmap(NULL, r->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r->mem == MAP_FAILED) { int e = errno; close(fd); free(r); return throw_errno(env, "mmap", e); }
  r->lens = (uint32_t *)(r->mem + (size_t)r->slots * r->slot_size);
  r->addrs = r->lens + r->slots;
  // Touch each slot's first page now, before any session: a page's first touch is a fault and a
  // zeroed page, and taking that inside recvmmsg for the ring's first round slows the receive
  // thread just when a session starts (a 1,500-byte datagram needs only that page).
  for (uint32_t k = 0; k < r->slots; k++) r->mem[(size_t)k * r->slot_size] = 0;
  memset(r->lens, 0, (size_t)r->slots * 8);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);

  napi_value memory, name, result, handle, rbv;
  if (napi_create_external_arraybuffer(env, r->mem, r->mem_len, mem_finalize, (void *)(uintptr_t)r->mem_len, &memory) != napi_ok) {
    munmap(r->mem, r->mem_len); close(fd); free(r);
    napi_throw_error(env, "RC_ERR_IO", "rcudp: external ArrayBuffers are not allowed in this Node build");
    return NULL;
  }
  CHECK(napi_create_reference(env, memory, 1, &r->memref));
  CHECK(napi_create_string_utf8(env, "rcudp-rx", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_threadsafe_function(env, argv[1], NULL, name, 1, 1, r, rx_finalize, r, rx_call_js, &r->tsfn));
  if (pthread_create(&r->thread, NULL, rx_main, r) != 0) {
    int e = errno;
    close(fd);
    r->closed = 1;
    r->owners = 1; // no handle will exist
    napi_delete_reference(env, r->memref);
    napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
    return throw_errno(env, "pthread_create", e);
  }
  r->thread_started = 1;
  pthread_setname_np(r->thread, "rcudp-rx"); // ps, top -H and perf name it
  CHECK(napi_create_external(env, r, rx_finalize, NULL, &handle));
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_uint32(env, (uint32_t)got_rb, &rbv));
  CHECK(napi_set_named_property(env, result, "handle", handle));
  CHECK(napi_set_named_property(env, result, "memory", memory));
  CHECK(napi_set_named_property(env, result, "rcvbuf", rbv));
  napi_value sz;
  CHECK(napi_create_uint32(env, r->slot_size, &sz));
  CHECK(napi_set_named_property(env, result, "slotSize", sz));
  return result;
}

// rxMembership(handle, add: boolean, group, iface)
static napi_value rx_membership(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Rx *r = rx_of(env, argv[0]);
  if (!r) return NULL;
  if (r->closed) return NULL;
  bool add = false;
  napi_get_value_bool(env, argv[1], &add);
  char g[64], i[64];
  size_t len;
  struct ip_mreq mr = {0};
  if (napi_get_value_string_utf8(env, argv[2], g, sizeof g, &len) != napi_ok || inet_pton(AF_INET, g, &mr.imr_multiaddr) != 1 ||
      napi_get_value_string_utf8(env, argv[3], i, sizeof i, &len) != napi_ok || inet_pton(AF_INET, i, &mr.imr_interface) != 1) {
    napi_throw_type_error(env, "RC_ERR_USAGE", "rxMembership(handle, add, group, iface)");
    return NULL;
  }
  if (setsockopt(r->fd, IPPROTO_IP, add ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &mr, sizeof mr)) {
    return throw_errno(env, add ? "IP_ADD_MEMBERSHIP" : "IP_DROP_MEMBERSHIP", errno);
  }
  return NULL;
}

static napi_value set_u64(napi_env env, napi_value o, const char *k, uint64_t v) {
  napi_value x;
  napi_create_double(env, (double)v, &x);
  napi_set_named_property(env, o, k, x);
  return o;
}

// rxStats(handle) → { datagrams, batches, fullWaits, truncated, errors, lastErrno }
static napi_value rx_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], o;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Rx *r = rx_of(env, argv[0]);
  if (!r) return NULL;
  CHECK(napi_create_object(env, &o));
  set_u64(env, o, "datagrams", atomic_load(&r->datagrams));
  set_u64(env, o, "batches", atomic_load(&r->batches));
  set_u64(env, o, "fullWaits", atomic_load(&r->full_waits));
  set_u64(env, o, "truncated", atomic_load(&r->truncated));
  set_u64(env, o, "errors", atomic_load(&r->errors));
  set_u64(env, o, "lastErrno", (uint64_t)r->last_errno);
  return o;
}

// rxClose(handle): stop and join the thread, close the socket; safe to call twice
static napi_value rx_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Rx *r = rx_of(env, argv[0]);
  if (!r || r->closed) return NULL;
  atomic_store(&r->stop, 1);
  shutdown(r->fd, SHUT_RDWR); // wakes a blocked recvmmsg at once
  pthread_mutex_lock(&r->mu);
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (r->thread_started) pthread_join(r->thread, NULL);
  close(r->fd);
  r->closed = 1;
  napi_delete_reference(env, r->memref);
  napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort); // r is freed once the handle is gone too
  return NULL;
}

// ---------------------------------------------------------------- send

typedef struct { int fd; int closed; } Tx;

static Tx *tx_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "RC_ERR_IO", "rcudp: not a sender handle");
    return NULL;
  }
  return p;
}

static void tx_finalize(napi_env env, void *data, void *hint) {
  Tx *t = data;
  if (!t->closed) close(t->fd);
  free(t);
}

// txOpen({ iface, port, group, ttl, sndbuf, loop }) → handle: bound to iface:port (shared with
// the control socket, SO_REUSEADDR), multicast out of iface, connected to group:port
static napi_value tx_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], handle;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct in_addr group, iface;
  uint32_t port, ttl, sndbuf, loop;
  if (argc < 1 || get_addr(env, argv[0], "group", &group) || get_addr(env, argv[0], "iface", &iface) ||
      get_u32(env, argv[0], "port", &port) || get_u32(env, argv[0], "ttl", &ttl) ||
      get_u32(env, argv[0], "sndbuf", &sndbuf) || get_u32(env, argv[0], "loop", &loop) || port == 0 || port > 65535) {
    napi_throw_type_error(env, "RC_ERR_USAGE", "txOpen: group, iface (IPv4), port, ttl, sndbuf, loop");
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1, sb = (int)sndbuf;
  unsigned char t = (unsigned char)ttl, lp = loop ? 1 : 0;
  struct sockaddr_in local = {0}, dst = {0};
  local.sin_family = AF_INET;
  local.sin_port = htons((uint16_t)port);
  local.sin_addr = iface;
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)port);
  dst.sin_addr = group;
  const char *what = NULL;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one)) what = "SO_REUSEADDR";
  else if (bind(fd, (struct sockaddr *)&local, sizeof local)) what = "bind";
  else if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &iface, sizeof iface)) what = "IP_MULTICAST_IF";
  else if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &t, sizeof t)) what = "IP_MULTICAST_TTL";
  else if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &lp, sizeof lp)) what = "IP_MULTICAST_LOOP";
  else if (connect(fd, (struct sockaddr *)&dst, sizeof dst)) what = "connect";
  if (what) { int e = errno; close(fd); return throw_errno(env, what, e); }
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb); // capped by net.core.wmem_max
  Tx *tx = calloc(1, sizeof *tx);
  if (!tx) { close(fd); return throw_errno(env, "calloc", ENOMEM); }
  tx->fd = fd;
  CHECK(napi_create_external(env, tx, tx_finalize, NULL, &handle));
  return handle;
}

// txSend(handle, buf, offsets: Uint32Array, lengths: Uint32Array, count) → datagrams sent (the
// first ones; fewer when the socket buffer is full), or -errno for an error on the first
static napi_value tx_send(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], res;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Tx *t = tx_of(env, argv[0]);
  if (!t) return NULL;
  if (t->closed) return throw_errno(env, "txSend", EBADF);
  uint8_t *buf;
  size_t buflen, ol, ll;
  void *op, *lp;
  napi_typedarray_type ot, lt;
  napi_value ab;
  size_t boff;
  uint32_t count;
  bool isbuf = false;
  napi_is_buffer(env, argv[1], &isbuf);
  if (!isbuf || napi_get_buffer_info(env, argv[1], (void **)&buf, &buflen) != napi_ok ||
      napi_get_typedarray_info(env, argv[2], &ot, &ol, &op, &ab, &boff) != napi_ok || ot != napi_uint32_array ||
      napi_get_typedarray_info(env, argv[3], &lt, &ll, &lp, &ab, &boff) != napi_ok || lt != napi_uint32_array ||
      napi_get_value_uint32(env, argv[4], &count) != napi_ok || count > ol || count > ll) {
    napi_throw_type_error(env, "RC_ERR_USAGE", "txSend(handle, buffer, Uint32Array offsets, Uint32Array lengths, count)");
    return NULL;
  }
  const uint32_t *offs = op, *lens = lp;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  uint32_t done = 0;
  while (done < count) {
    uint32_t n = count - done < BATCH ? count - done : BATCH;
    for (uint32_t k = 0; k < n; k++) {
      uint32_t o = offs[done + k], l = lens[done + k];
      if ((size_t)o + l > buflen) { napi_throw_range_error(env, "RC_ERR_USAGE", "txSend: a datagram lies outside the buffer"); return NULL; }
      iov[k].iov_base = buf + o;
      iov[k].iov_len = l;
      memset(&msgs[k], 0, sizeof msgs[k]);
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(t->fd, msgs, n, MSG_DONTWAIT);
    if (r < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (done > 0 || e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) break; // the caller retries later
      CHECK(napi_create_int32(env, -e, &res));
      return res;
    }
    done += (uint32_t)r;
    if ((uint32_t)r < n) break;
  }
  CHECK(napi_create_uint32(env, done, &res));
  return res;
}

// txClose(handle): safe to call twice
static napi_value tx_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Tx *t = tx_of(env, argv[0]);
  if (!t || t->closed) return NULL;
  close(t->fd);
  t->closed = 1;
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"rxOpen", NULL, rx_open, NULL, NULL, NULL, napi_default, NULL},
    {"rxMembership", NULL, rx_membership, NULL, NULL, NULL, napi_default, NULL},
    {"rxStats", NULL, rx_stats, NULL, NULL, NULL, napi_default, NULL},
    {"rxClose", NULL, rx_close, NULL, NULL, NULL, napi_default, NULL},
    {"txOpen", NULL, tx_open, NULL, NULL, NULL, napi_default, NULL},
    {"txSend", NULL, tx_send, NULL, NULL, NULL, napi_default, NULL},
    {"txClose", NULL, tx_close, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
