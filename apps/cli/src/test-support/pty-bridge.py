"""Runs a command on a new pseudo-terminal of a given size and bridges it to pipes.

Usage: python3 pty-bridge.py COLUMNS ROWS COMMAND [ARGUMENT...]

The command gets the terminal as its stdin, stdout and stderr (and as its controlling terminal). Bytes
arriving on this program's stdin are written to the terminal, as typed keys; everything the command
writes to the terminal (with the terminal's own echo of the keys) is copied to this program's stdout.
When the command ends, its status is written to stderr as `exit N` or `signal N`, and this program
exits 0. Used by the CLI tests to run gantry interactively without native Node.js modules.
"""
import fcntl
import os
import select
import struct
import sys
import termios

columns, rows = int(sys.argv[1]), int(sys.argv[2])
command = sys.argv[3:]

pid, master = os.forkpty()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    os.execvp(command[0], command)

stdin_open = True
output = sys.stdout.buffer
while True:
    readers = [master] + ([0] if stdin_open else [])
    ready, _, _ = select.select(readers, [], [])
    if 0 in ready:
        data = os.read(0, 65536)
        if data:
            os.write(master, data)
        else:
            stdin_open = False
    if master in ready:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if not data:
            break
        output.write(data)
        output.flush()

_, status = os.waitpid(pid, 0)
if os.WIFSIGNALED(status):
    sys.stderr.write("signal %d\n" % os.WTERMSIG(status))
else:
    sys.stderr.write("exit %d\n" % os.WEXITSTATUS(status))
