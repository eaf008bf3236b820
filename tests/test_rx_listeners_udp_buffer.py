"""The UDP listeners ask the kernel for a large receive buffer, so bursts
that arrive while the loop is busy are queued rather than dropped."""

import socket

from receiver.listeners import UDP_RCVBUF, enlarge_receive_buffer


def test_enlarge_receive_buffer_grows_the_socket_buffer():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        before = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        got = enlarge_receive_buffer(s, UDP_RCVBUF)
        assert got == s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert got > before
    finally:
        s.close()


def test_enlarge_receive_buffer_tolerates_no_socket():
    assert enlarge_receive_buffer(None) == 0
