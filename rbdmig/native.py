"""Blocking Ceph calls on native threads when eventlet has patched them."""

import queue
import sys
import threading

from rbdmig.migration import progress

# How often a thread waiting for a native job wakes up to relay progress.
POLL_INTERVAL = 0.2


def patched():
    """Return True when eventlet has monkey-patched this process's threads.

    cinder-volume patches by default (``cinder.monkey_patch.patch()``);
    with ``OS_CINDER_DISABLE_EVENTLET_PATCHING=1``, or outside Cinder,
    nothing is patched and every call below is a plain call.
    """
    patcher = sys.modules.get('eventlet.patcher')
    return patcher is not None and patcher.is_monkey_patched('thread')


def call(func, *args, **kwargs):
    """Run ``func`` where it cannot stall the event loop; return its result.

    Patched, it runs on one of eventlet's native pool threads
    (``tpool.execute``, as Cinder's ``utils.tpool_wrap`` does), and the
    calling greenthread waits without blocking the others.  Called from a
    pool thread already, or unpatched, it is a plain call.
    """
    if patched():
        from eventlet import tpool
        return tpool.execute(func, *args, **kwargs)
    return func(*args, **kwargs)


def native_queue():
    """Return a ``SimpleQueue`` whose ``get`` blocks the native thread.

    librbd completes async I/O on its own threads: a queue from the
    patched ``queue`` module would wait on the event loop, which those
    threads cannot wake.
    """
    if patched():
        from eventlet import patcher
        return patcher.original('queue').SimpleQueue()
    return queue.SimpleQueue()


class Proxy(object):
    """Runs every method of ``obj`` through :func:`call`.

    Unlike ``eventlet.tpool.Proxy``, entering it as a context manager
    returns the proxy itself (``with proxy(rbd.Image(...)) as image``
    keeps ``image`` proxied), and whether to use the pool is decided per
    call, so one object serves both modes.
    """

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def native_method(*args, **kwargs):
            return call(attr, *args, **kwargs)
        native_method.__name__ = name
        return native_method

    def __enter__(self):
        call(self._obj.__enter__)
        return self

    def __exit__(self, *exc_info):
        return call(self._obj.__exit__, *exc_info)

    def __repr__(self):
        return '<native %r>' % (self._obj,)


class Module(object):
    """A module whose ``constructors`` build :class:`Proxy` objects.

    ``Module(rbd, ('Image', 'RBD'))`` reads like ``rbd``: ``Image(...)``
    opens the image on a native thread and returns it proxied, exception
    classes and constants are the module's own.
    """

    def __init__(self, module, constructors):
        self._module = module
        self._constructors = frozenset(constructors)

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if name not in self._constructors:
            return attr

        def construct(*args, **kwargs):
            return Proxy(call(attr, *args, **kwargs))
        return construct


class ProgressRelay(object):
    """Carries progress from a native job to a callback on the caller.

    The job reports to :attr:`sink` (a Callback that only stores numbers
    and may be called from any thread); :meth:`forward` passes the latest
    numbers to ``callback`` on the calling thread, where it may log, send
    notifications or cancel by raising.  Once it raised, the sink raises
    :class:`Cancelled` at the job's next report, so the job stops.
    """

    def __init__(self, callback):
        self.callback = callback
        self.sink = _Sink()
        self._sent = (None, None)

    def forward(self):
        """Pass the job's latest size and value on, if they changed."""
        size, value = self.sink.size, self.sink.value
        if size is None:
            return  # the job has not started reporting
        try:
            if size != self._sent[0]:
                self.callback.set_size(size)
            if (size, value) != self._sent:
                self.callback.absolute_update(value)
        except BaseException:
            self.sink.cancelled = True
            raise
        self._sent = (size, value)


class Cancelled(Exception):
    """Raised inside a native job whose caller's callback cancelled it."""


class _Sink(progress.Callback):
    def __init__(self):
        super().__init__(size=None, value=0)
        self.cancelled = False

    def call(self):
        if self.cancelled:
            raise Cancelled()


def run(func, relay=None, interval=None):
    """Run ``func()`` on a native thread while this thread relays progress.

    The calling thread (a greenthread when patched) stays free: it wakes
    every ``interval`` seconds to call ``relay.forward()``.  If that
    raises (the caller cancelled), the job is told through the relay's
    sink, waited for, and the callback's exception is raised; the job's
    own error, if any, is dropped as a consequence of the cancellation.

    :param func: the blocking work; it reports to ``relay.sink``.
    :param relay: a :class:`ProgressRelay`, or None for no progress.
    :param interval: seconds between relays; :data:`POLL_INTERVAL` when
        None.
    :returns: what ``func`` returned.
    :raises: what ``func`` raised, or what the callback raised.
    """
    interval = POLL_INTERVAL if interval is None else interval
    outcome = {}

    def work():
        try:
            outcome['result'] = call(func)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            outcome['error'] = err

    # Patched, threading.Thread is a greenthread and call() hands the work
    # to eventlet's native pool; unpatched, it is the native thread.
    worker = threading.Thread(target=work, name='rbdmig-native',
                              daemon=True)
    worker.start()
    try:
        while True:
            worker.join(interval)
            if relay is not None:
                relay.forward()
            if not worker.is_alive():
                break
    except BaseException:
        worker.join()
        raise
    if 'error' in outcome:
        raise outcome['error']
    return outcome.get('result')
