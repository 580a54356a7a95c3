"""Notebook kernels forked from the preloaded server (`compute.preloaded`): a kernel of 03–06
starts with TensorFlow, Keras and roicast imported instead of importing them itself."""

import os
import sys

from jupyter_client.provisioning import LocalProvisioner

from roicast.compute import preloaded

LAUNCHER = ["-m", "ipykernel_launcher"]


def _ipykernel(args: list[str]) -> None:
    """What `python -m ipykernel_launcher ARGS` does, in the forked process."""
    os.environ["JPY_PARENT_PID"] = str(os.getppid())  # the server: the kernel exits when it goes
    sys.argv = ["ipykernel_launcher", *args]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


class ForkedProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, launching its kernel from the preloaded server; the
    kernel's stdout and stderr go to `log_path`."""

    log_path = None

    async def launch_kernel(self, cmd: list[str], **kwargs):
        if cmd[1:3] != LAUNCHER:
            raise ValueError(f"not an ipykernel command: {cmd}")
        self.process = preloaded.fork(_ipykernel, (cmd[3:],), self.log_path, kwargs["cwd"], kwargs["env"],
                                      name="roicast-kernel")
        self.pid = self.pgid = self.process.pid
        self.cwd = kwargs["cwd"]
        return self.connection_info
