"""The sandboxed Python worker: standard library only, run as ``python -I -c <this source> <config json>``.

It never imports arpo-env (the sandbox may not see the project). Roles:

- **zygote** (the process the host starts, one per *tree* of forked sessions): optionally sets up the
  sandbox (new mount and network namespaces, private ``/tmp``, ``/dev/shm`` and ``/var/tmp`` tmpfs, home
  directories hidden, the interpreter's prefix re-bound read-only), becomes a child subreaper (it reaps
  every orphan of its tree, so nothing is left a zombie), then serves the host's control channel:
  ``spawn`` forks a fresh session on a channel the host passes with ``SCM_RIGHTS``. When the control
  channel closes (host closed the tree or died) it kills the whole tree and exits.
- **session** (forked from the zygote or from another session): drops privileges (uid/gid, no new
  privileges, rlimits), works in its own scratch directory and serves ``exec`` (run one notebook cell) and
  ``fork`` (``os.fork()`` itself: copy-on-write, the child gets the new channel passed with ``SCM_RIGHTS``
  and a copy of the scratch directory). A watchdog thread kills the session's process group as soon as
  the host's end of its channel closes, so closing or killing the host leaves nothing running.

Framing: a 4-byte big-endian length, then UTF-8 JSON; file descriptors ride on the same ``sendmsg``.
Every reply echoes the request's ``id``; the host also checks the sender's pid (``SCM_CREDENTIALS``).

Forks made by the *user's* code (``os.fork()``, ``multiprocessing``) never speak on the channel: an
``os.register_at_fork`` hook closes the channel in such a child (our own ``fork`` op is told apart by a
flag set around its ``os.fork()``), and a process whose pid is not the session's never replies: when the
child's code returns into the worker (the end of the cell, an exception, ``sys.exit``), it flushes its
output and ``os._exit`` s with the status a script would have. Each cell writes into a fresh output
buffer (a ``memfd``), so what a user-forked child prints while the cell that forked it runs is part of
that cell's output and what it prints later goes into the old buffer, which nobody reads (dropped).
Not covered: a child that finds and writes the channel's fd itself (a fork through ``ctypes`` skips the
hook): the host's pid check turns its bytes into a ``ProtocolError``, never into a result.
"""
import ast
import builtins
import ctypes
import json
import linecache
import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import threading
import time
import traceback

CLONE_NEWNS, CLONE_NEWNET = 0x20000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
_libc = ctypes.CDLL(None, use_errno=True)


def send(sock, obj, fds=()):
    data = json.dumps(obj).encode()
    msg = struct.pack(">I", len(data)) + data
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
    sent = sock.sendmsg([msg], anc)
    if sent < len(msg):
        sock.sendall(msg[sent:])


def recv(sock):
    """One message, the fds that came with it, and whether fds were lost (``MSG_CTRUNC``: the process had
    no free descriptor to receive them into); ``(None, [], False)`` at end of stream."""
    fds = []
    truncated = False
    head = b""
    while len(head) < 4:
        chunk, anc, flags, _ = sock.recvmsg(4 - len(head), socket.CMSG_SPACE(16 * 4))
        truncated = truncated or bool(flags & socket.MSG_CTRUNC)
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]))
        if not chunk:
            return None, fds, truncated
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None, fds, truncated
        body += chunk
    return json.loads(body), fds, truncated


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src, dst, fstype, flags, data=None):
    _check(_libc.mount(src.encode(), dst.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {dst}")


def hold_paths(keep):
    """O_PATH handles on the dirs of ``keep`` (the interpreter's), taken before any tmpfs covers them: a venv
    under /tmp or a pyenv under /root stays reachable through its handle after the cover is mounted."""
    return [(p, os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)) for p in keep if os.path.isdir(p)]


def hide_paths(held, hide):
    """Cover each dir of ``hide`` with an empty tmpfs, then bind each held dir (:func:`hold_paths`) back at
    its own path, read-only."""
    for path in hide:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path, fd in held:
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)


def setup_namespaces(cfg):
    """Root only: private mount + network namespaces, private tmpfs dirs, hidden homes."""
    flags = CLONE_NEWNS | (CLONE_NEWNET if cfg.get("netns", True) else 0)
    _check(_libc.unshare(flags), "unshare")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    held = hold_paths(cfg.get("keep", []))
    tmp_mb = int(cfg.get("tmpfs_mb", 64))
    for d in ("/tmp", "/dev/shm", "/var/tmp"):
        if os.path.isdir(d):
            _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_mb}m,mode=1777")
    hide_paths(held, cfg.get("hide", []))
    if cfg.get("netns", True):
        try:  # loopback up, so code can use 127.0.0.1 inside its own (empty) namespace
            import fcntl
            s = socket.socket()
            ifr = struct.pack("16sH", b"lo", 0)
            flags_now = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, ifr)[:18])[1]
            fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags_now | 1))
            s.close()
        except OSError:
            pass


def drop_privileges(cfg):
    uid, gid = cfg.get("uid"), cfg.get("gid")
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(gid if gid is not None else uid)
        os.setuid(uid)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    limits = cfg.get("rlimits", {})
    for name, value in limits.items():
        res = getattr(resource, "RLIMIT_" + name.upper())
        if value is not None:
            value = int(value)
            try:
                resource.setrlimit(res, (value, value))
            except (ValueError, OSError):
                pass
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def close_other_fds(keep):
    for fd in range(3, 1024):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def start_watchdog(chan_fd):
    """Kill this session's process group once the host's end of the channel closes."""
    def watch():
        p = select.poll()
        p.register(chan_fd, select.POLLRDHUP)
        while True:
            try:
                events = p.poll()
            except InterruptedError:
                continue
            if any(ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _, ev in events):
                os.killpg(0, signal.SIGKILL)
                os._exit(137)
    threading.Thread(target=watch, daemon=True, name="arpo-watchdog").start()


_SESSION = None
"""The session this process serves (``None`` in the zygote)."""
_OWN_FORK = False
"""True while the session's own ``fork`` op calls ``os.fork()`` (its child keeps a channel of its own)."""


def _after_fork_in_child():
    """``os.register_at_fork`` hook: a child forked by user code loses the channel at once."""
    if _SESSION is not None and not _OWN_FORK:
        try:
            _SESSION.chan.close()
        except OSError:
            pass


class Session:
    """One notebook-like Python session served over a channel."""

    def __init__(self, chan, cfg, scratch):
        self.chan, self.cfg, self.scratch = chan, cfg, scratch
        self.ns = {"__name__": "__main__", "__builtins__": builtins}
        self.cells = 0
        self.children = set()
        self.pid = os.getpid()
        self.out = os.memfd_create("cell-output")

    def hello(self):
        self.reply({"op": "hello", "pid": os.getpid(), "scratch": self.scratch})

    def reply(self, obj, rid=None):
        if os.getpid() != self.pid:  # a copy made by user code: it never speaks on the channel
            self.child_exit(None)
        if rid is not None:
            obj["id"] = rid
        send(self.chan, obj)

    def child_exit(self, exc):
        """End a process forked by user code that returned into the worker, as a script would end."""
        status = 0
        try:
            if isinstance(exc, SystemExit):
                code = exc.code
                status = code if isinstance(code, int) else (0 if code is None else 1)
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
            elif exc is not None:
                status = 1
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        except BaseException:
            pass
        os._exit(status & 0xFF)

    def reap(self, *_):
        for pid in list(self.children):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    self.children.discard(pid)
            except ChildProcessError:
                self.children.discard(pid)

    def serve(self):
        global _SESSION
        _SESSION = self
        os.register_at_fork(after_in_child=_after_fork_in_child)
        signal.signal(signal.SIGCHLD, self.reap)
        self.hello()
        while True:
            try:
                msg, fds, truncated = recv(self.chan)
            except InterruptedError:
                continue
            self.reap()
            if msg is None:
                os.killpg(0, signal.SIGKILL)
            op, rid = msg.get("op"), msg.get("id")
            try:
                if op == "exec":
                    self.reply(self.run_cell(msg.get("code", "")), rid)
                elif op == "fork" and fds:
                    for extra in fds[1:]:
                        os.close(extra)
                    self.fork(fds[0], rid)
                elif op == "fork":
                    why = ("the session is out of file descriptors (RLIMIT_NOFILE = "
                           f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}), so the new session's channel "
                           "could not be received; close some files in the session (os.close) and fork again"
                           if truncated else "no channel came with the request")
                    self.reply({"op": "error", "error": f"fork failed: {why}"}, rid)
                elif op == "reap":
                    self.reply(self.kill_child(int(msg.get("pid", 0))), rid)
                elif op == "ping":
                    self.reply({"op": "pong"}, rid)
                else:
                    self.reply({"op": "error", "error": f"unknown op {op!r}"}, rid)
            except (OSError, ValueError) as exc:  # the worker's own step failed (e.g. no fd left)
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                self.reply({"op": "error", "error": f"{op} failed: {type(exc).__name__}: {exc}"}, rid)

    def kill_child(self, pid):
        """SIGKILL a child this session forked (a fork that failed to start) and reap it."""
        if pid not in self.children:
            return {"op": "reaped", "pid": pid, "done": True}
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
        done = False
        for _ in range(500):  # SIGKILL is final: this ends within milliseconds
            try:
                done = os.waitpid(pid, os.WNOHANG)[0] != 0
            except ChildProcessError:
                done = True
            if done:
                break
            time.sleep(0.01)
        if done:
            self.children.discard(pid)
        return {"op": "reaped", "pid": pid, "done": done}

    def fork(self, fd, rid):
        global _OWN_FORK
        t0 = time.perf_counter()
        _OWN_FORK = True
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(fd)
            self.reply({"op": "error", "error": f"fork failed: os.fork() in the session: {exc}"}, rid)
            return
        finally:
            _OWN_FORK = False
        if pid == 0:
            self.pid = os.getpid()
            self.chan.close()
            self.chan = socket.socket(fileno=fd)
            os.setsid()
            new = os.path.join(os.path.dirname(self.scratch), f"s{os.getpid()}")
            try:
                shutil.copytree(self.scratch, new, symlinks=True)
            except (OSError, shutil.Error):
                os.makedirs(new, exist_ok=True)
            self.scratch = new
            os.chdir(new)
            self.children = set()
            os.close(self.out)  # the parent's output buffer stays the parent's
            self.out = os.memfd_create("cell-output")
            start_watchdog(fd)
            self.hello()
            return
        os.close(fd)
        self.children.add(pid)
        self.reply({"op": "forked", "pid": pid, "fork_seconds": time.perf_counter() - t0}, rid)

    def fresh_output(self):
        """A new, empty output buffer on fds 1 and 2: a user-forked child that still holds the last one
        writes where nobody reads."""
        try:
            new = os.memfd_create("cell-output")
        except OSError:  # out of descriptors: free the old buffer's slot first
            os.close(self.out)
            self.out = -1
            new = os.memfd_create("cell-output")
        else:
            os.close(self.out)
        self.out = new
        for fd in (1, 2):
            os.dup2(self.out, fd)

    def run_cell(self, src):
        self.cells += 1
        name = f"<cell {self.cells}>"
        self.fresh_output()
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        error = None
        try:
            linecache.cache[name] = (len(src), None, src.splitlines(True), name)
            tree = ast.parse(src, filename=name)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, name, "exec"), self.ns)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), name, "eval"), self.ns)
                if os.getpid() != self.pid:
                    self.child_exit(None)
                if value is not None:
                    print(repr(value))
        except BaseException as exc:  # the cell's errors are output; the session lives on
            if os.getpid() != self.pid:
                self.child_exit(exc)
            error = type(exc).__name__
            try:
                if isinstance(exc, SyntaxError):
                    lines = traceback.format_exception_only(type(exc), exc)
                else:
                    lines = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
                os.write(self.out, "".join(lines).encode("utf-8", "replace"))
            except BaseException:
                pass
        if os.getpid() != self.pid:
            self.child_exit(None)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        limit = int(self.cfg.get("max_output_bytes", 65536))
        size = os.fstat(self.out).st_size
        data = os.pread(self.out, limit, 0)
        return {"op": "result", "output": data.decode("utf-8", "replace"), "error": error,
                "dropped_bytes": max(0, size - limit)}


def run_session(chan, cfg):
    drop_privileges(cfg)
    os.setsid()
    root = cfg.get("scratch_root", "/tmp/arpo")
    scratch = os.path.join(root, f"s{os.getpid()}")
    os.makedirs(scratch, exist_ok=True)
    os.chdir(scratch)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-large writes fail with EFBIG instead of killing
    for fd in (0,):
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    start_watchdog(chan.fileno())
    Session(chan, cfg, scratch).serve()


def kill_tree(cfg):
    """Kill every process of the tree: by uid when the tree has its own uid, else nothing to do here
    (sessions kill themselves when their channels close)."""
    uid = cfg.get("uid")
    if uid is None or not cfg.get("own_uid"):
        return
    pid = os.fork()
    if pid == 0:
        try:
            if os.getuid() == 0:
                os.setgid(uid)
                os.setuid(uid)
            os.kill(-1, signal.SIGKILL)  # every process of this uid except this one (Linux semantics)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def zygote(cfg):
    if cfg.get("connect"):
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ctl.connect(cfg["connect"])
    else:
        ctl = socket.socket(fileno=int(cfg["fd"]))
    close_other_fds({ctl.fileno()})
    if cfg.get("setup"):
        setup_namespaces(cfg["setup"])
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    root = cfg.get("scratch_root", "/tmp/arpo")
    os.makedirs(root, exist_ok=True)
    if cfg.get("uid") is not None and os.getuid() == 0:
        os.chown(root, cfg["uid"], cfg.get("gid", cfg["uid"]))
    if os.getpid() != 1:
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    send(ctl, {"op": "hello", "pid": os.getpid(), "uid": os.getuid()})
    poller = select.poll()
    poller.register(ctl.fileno(), select.POLLIN)
    while True:
        try:
            events = poller.poll(500)
        except InterruptedError:
            events = []
        while True:  # reap every finished child (sessions and orphans adopted as subreaper)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not events:
            continue
        msg, fds, _ = recv(ctl)
        if msg is None:
            kill_tree(cfg)
            os._exit(0)
        if msg.get("op") == "spawn" and fds:
            pid = os.fork()
            if pid == 0:
                ctl.close()
                chan = socket.socket(fileno=fds[0])
                try:
                    run_session(chan, cfg)
                finally:
                    os._exit(1)
            os.close(fds[0])
            send(ctl, {"op": "spawned", "pid": pid})
        elif msg.get("op") == "kill":
            for kill in (os.killpg, os.kill):  # the group, and the process if it has none of its own yet
                try:
                    kill(int(msg["pid"]), signal.SIGKILL)
                except OSError:
                    pass
            send(ctl, {"op": "killed"})
        else:
            send(ctl, {"op": "error", "error": "bad request"})


def prestage(cfg):
    """Root only, before an unprivileged sandbox tool (bwrap): hide the homes in a private mount
    namespace (re-binding the interpreter), drop to the tree's uid, then exec ``cfg["exec"]``."""
    setup = dict(cfg.get("setup", {}), netns=False)
    _check(_libc.unshare(CLONE_NEWNS), "unshare")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    hide_paths(hold_paths(setup.get("keep", [])), setup.get("hide", []))
    uid = cfg["uid"]
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    os.execv(cfg["exec"][0], cfg["exec"])


if __name__ == "__main__":
    _cfg = json.loads(sys.argv[1])
    prestage(_cfg) if _cfg.get("prestage") else zygote(_cfg)
