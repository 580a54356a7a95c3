"""multiprocessing's launch of a process from its fork server, less one step (`Launch`)."""

import io
import os
from multiprocessing import context, forkserver, popen_forkserver, reduction, spawn, util


class Launch(popen_forkserver.Popen):
    """multiprocessing's launch from the fork server, less its import of the caller's `__main__`
    in the new process: the work is a function of roicast's, and a script that runs a chain
    without an `if __name__ == "__main__":` guard would start it again there."""

    def _launch(self, process_obj):
        prep_data = {key: value for key, value in spawn.get_preparation_data(process_obj._name).items()
                     if key not in ("init_main_from_name", "init_main_from_path")}
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)  # the new process's sentinel of this one (`_end_with_the_caller`)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class ForkServerProcess(context.ForkServerProcess):
    """A process forked from the fork server by `Launch`."""

    @staticmethod
    def _Popen(process_obj):
        return Launch(process_obj)
