"""The scratch folder a fuzz harness rewrites its input files in."""
import os
import shutil
import tempfile


def make_scratch_folder(kind):
    """A fresh folder named after the harness and this process, in memory when possible.

    /dev/shm is preferred because rewriting a file in place on ext4 waits for the disk (its
    truncate-and-rewrite heuristic flushes the data), about 3 ms per write, which would cap the
    fuzzer at a few hundred inputs a second. libFuzzer ends the process with exit(), so Python's
    atexit never runs: folders left by processes that no longer exist are removed here instead.
    """
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    prefix = f"bertcpu-fuzz-{kind}-"
    for name in os.listdir(base):
        owner = name[len(prefix):]
        if name.startswith(prefix) and owner.isdigit() and not _process_exists(int(owner)):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    folder = os.path.join(base, prefix + str(os.getpid()))
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
