# Runs a sipvicious tool (svmap, svwar, svcrack) as it is installed, with
# three changes the interop tests need (test/interop/security_test.go):
#
#  - HLAS_UA, when set, replaces the User-Agent the tool writes
#    ("friendly-scanner"): the tools have no option for it, but a scanner in
#    the wild changes this one string;
#  - HLAS_BIND, when set, is the address the tool's socket binds when it
#    would bind every interface: svwar and svcrack 0.3.3 parse -b but never
#    use it, so without this they would send from 127.0.0.1;
#  - HLAS_TAP, when set, names a file that gets one JSON line per datagram
#    the tool sends or receives, with the wall-clock time, so the test can
#    count what the attacker sent and what it got back.
#
# usage: python3 sipvicious.py TOOL [tool arguments...]
import json
import os
import socket
import sys
import time

sys.path.insert(0, "/usr/share/sipvicious")
from sipvicious.libs import svhelper  # noqa: E402

agent = os.environ.get("HLAS_UA")
if agent:
    code = svhelper.makeRequest.__code__
    names = code.co_varnames[: code.co_argcount]
    defaults = list(svhelper.makeRequest.__defaults__)
    defaults[names.index("useragent") - (len(names) - len(defaults))] = agent
    svhelper.makeRequest.__defaults__ = tuple(defaults)

bind_ip = os.environ.get("HLAS_BIND")
tap_path = os.environ.get("HLAS_TAP")
tap = open(tap_path, "a", buffering=1) if tap_path else None


def record(direction, data, peer):
    if tap is None:
        return
    if isinstance(data, str):
        data = data.encode()
    tap.write(json.dumps({
        "t": time.time_ns(),
        "dir": direction,
        "peer": "%s:%s" % (peer[0], peer[1]) if peer else "",
        "msg": data.decode("utf-8", "replace"),
    }) + "\n")


class TapSocket(socket.socket):
    def bind(self, address):
        if bind_ip and address[0] in ("", "0.0.0.0"):
            address = (bind_ip,) + tuple(address[1:])
        return super().bind(address)

    def sendto(self, data, *args):
        n = super().sendto(data, *args)
        record("send", data, args[-1])
        return n

    def recvfrom(self, *args):
        data, peer = super().recvfrom(*args)
        record("recv", data, peer)
        return data, peer


socket.socket = TapSocket

tool = sys.argv[1]
module = __import__("sipvicious." + tool, fromlist=["main"])
sys.argv = [tool] + sys.argv[2:]
sys.exit(module.main())
