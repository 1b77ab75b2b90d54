import { getSystemErrorName } from 'node:util';
import fs = require('node:fs');
import { SystemError } from './errors';
import { waitReadable } from './fd-watch';
import { lazyLibc } from './koffi';

/*
 * SOCK_SEQPACKET sockets through libc (Node's net module refuses them).
 * Constants and struct layouts are Linux 64-bit (x86_64, aarch64).
 */
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_TRUNC = 0x20;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const EINTR = 4;
const EAGAIN = 11;

/** Largest packet we accept, as runc: a read that fills the buffer may have been cut. */
export const MAX_PACKET = 40 * 1024;
/** CMSG_SPACE(sizeof(int)): cmsghdr {size_t len; int level; int type} + one fd, padded to 8. */
const CONTROL_LEN = 24;

export interface Packet {
  data: Buffer;
  /** An fd passed with SCM_RIGHTS (close-on-exec); the receiver owns it. */
  fd?: number;
}

interface Libc {
  socketpair(domain: number, type: number, protocol: number, sv: number[]): number;
  send(fd: number, buf: Uint8Array, len: number, flags: number): number;
  recvmsg(fd: number, msg: Record<string, unknown>, flags: number): number;
  sendmsg(fd: number, msg: Record<string, unknown>, flags: number): number;
  errno(): number;
}

const bind = lazyLibc((lib, koffi): Libc => {
  const iovec = koffi.struct({ iov_base: 'void *', iov_len: 'size_t' });
  const msghdr = koffi.struct({
    msg_name: 'void *', msg_namelen: 'uint32_t', msg_iov: koffi.pointer(iovec), msg_iovlen: 'size_t',
    msg_control: 'void *', msg_controllen: 'size_t', msg_flags: 'int',
  });
  return {
    socketpair: lib.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)'),
    send: lib.func('intptr_t send(int fd, const void *buf, size_t len, int flags)'),
    recvmsg: lib.func('recvmsg', 'intptr_t', ['int', koffi.inout(koffi.pointer(msghdr)), 'int']),
    sendmsg: lib.func('sendmsg', 'intptr_t', ['int', koffi.pointer(msghdr), 'int']),
    errno: () => koffi.errno(),
  };
});

function failed(call: string, errno: number): SystemError {
  return new SystemError(`${call} failed: ${getSystemErrorName(-errno)}`, Object.assign(new Error(call), { errno }));
}

/** A connected AF_UNIX SOCK_SEQPACKET pair, both ends close-on-exec. */
export function socketpair(): [number, number] {
  const c = bind();
  const sv = [-1, -1];
  if (c.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) !== 0) throw failed('socketpair', c.errno());
  return [sv[0], sv[1]];
}

/** A connected AF_UNIX SOCK_STREAM pair, both ends close-on-exec: for peers that speak a byte stream (CRIU's page server). */
export function streamSocketpair(): [number, number] {
  const c = bind();
  const sv = [-1, -1];
  if (c.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) !== 0) throw failed('socketpair', c.errno());
  return [sv[0], sv[1]];
}

/** Sends one packet (a short blocking call: the peer's receive queue has room for it). */
export function sendPacket(fd: number, data: Uint8Array): void {
  const c = bind();
  for (;;) {
    const n = c.send(fd, data, data.length, MSG_NOSIGNAL);
    if (n === data.length) return;
    if (n >= 0) throw new SystemError(`send: wrote ${n} of ${data.length} bytes`);
    const errno = c.errno();
    if (errno !== EINTR) throw failed('send', errno);
  }
}

/** Sends one packet carrying `passFd` (SCM_RIGHTS); the receiver gets its own copy of the fd. */
export function sendPacketWithFd(fd: number, data: Uint8Array, passFd: number): void {
  const c = bind();
  const control = Buffer.alloc(24); // CMSG_SPACE(sizeof(int)): {size_t len; int level; int type} + int + padding
  control.writeBigUInt64LE(20n, 0); // CMSG_LEN(sizeof(int))
  control.writeInt32LE(SOL_SOCKET, 8);
  control.writeInt32LE(SCM_RIGHTS, 12);
  control.writeInt32LE(passFd, 16);
  const msg = {
    msg_name: null, msg_namelen: 0, msg_iov: [{ iov_base: Buffer.from(data), iov_len: data.length }], msg_iovlen: 1,
    msg_control: control, msg_controllen: control.length, msg_flags: 0,
  };
  for (;;) {
    const n = c.sendmsg(fd, msg, MSG_NOSIGNAL);
    if (n === data.length) return;
    if (n >= 0) throw new SystemError(`sendmsg: wrote ${n} of ${data.length} bytes`);
    const errno = c.errno();
    if (errno !== EINTR) throw failed('sendmsg', errno);
  }
}

/**
 * The next packet, with the fd it carries if any; null once the peer has closed.
 * The wait is lib/fd-watch's (one epoll for every fd); the read itself is a
 * non-blocking call on this thread so that errno is ours to read.
 */
export async function recvPacket(fd: number): Promise<Packet | null> {
  const c = bind();
  for (;;) {
    await waitReadable(fd);
    const data = Buffer.alloc(MAX_PACKET);
    const control = Buffer.alloc(CONTROL_LEN);
    const msg = {
      msg_name: null, msg_namelen: 0, msg_iov: [{ iov_base: data, iov_len: data.length }], msg_iovlen: 1,
      msg_control: control, msg_controllen: control.length, msg_flags: 0,
    };
    const n = c.recvmsg(fd, msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      const errno = c.errno();
      if (errno === EAGAIN || errno === EINTR) continue;
      throw failed('recvmsg', errno);
    }
    const passed = Number(msg.msg_controllen) >= 20 && control.readInt32LE(8) === SOL_SOCKET && control.readInt32LE(12) === SCM_RIGHTS
      ? control.readInt32LE(16)
      : undefined;
    if (n >= MAX_PACKET || msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
      if (passed !== undefined) fs.closeSync(passed);
      throw new SystemError(`received a truncated packet (limit ${MAX_PACKET} bytes, one fd)`);
    }
    if (n === 0) return null;
    return { data: data.subarray(0, n), fd: passed };
  }
}
