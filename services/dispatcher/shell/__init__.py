"""The dispatcher's shell: everything that does I/O around the pure decision core
(services/dispatcher/decide). It polls, turns what it heard into observations, steps
the core and carries out the effects it asks for.

    loop.py           DispatcherLoop: the service run_service drives (poll, feed, status)
    effectrunner.py   each effect carried out; the log followers; the log writer
    registrycalls.py  one step's registry calls as one pipelined batch -> Replied
    hearing.py        bus messages -> observations (events, heartbeat batches, artifacts)
    launcher.py       the launcher seam: start, signal, kill, observe, recover a worker
    forklauncher.py   the first launcher: fork server + shim per run (this host)
    folders.py        a run folder and its processes read into a FolderRead
    gpuread.py        the GPU inventory (pynvml or fake), re-read in a thread

The OS side of the fork launcher: ../forkserver.py (the fork server process),
../spawner.py (the shim, /proc lookups, signals), ../launch.py (a run's command and
environment), ../logfollow.py (run logs published on the bus).
"""
