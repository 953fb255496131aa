"""The CLI's exit codes, named by what they mean; every command takes its codes from here.

    0   EXIT_OK           done (a check passed, a gate promoted, an edit was chosen)
    1   EXIT_NO           a check said no: gates rejected, hits over --max-hits, a base not ready, no trial
                          within the bounds, a frozen bench that changed; also Python's own exit on a bug
    2   EXIT_INPUT        bad input: an option, a file, a bench, a target spec, an unknown run
    3   EXIT_UNAVAILABLE  a target or model unavailable at start (EXIT_STOPPED: the recal loop stopped at a stage)
    4   EXIT_ERRORS       a drill finished but some attempts are errors (see the report)
    130 EXIT_INTERRUPTED  interrupted (Ctrl-C); the same command, or --resume, finishes the job
"""

EXIT_OK = 0
EXIT_NO = 1
EXIT_BUG = 1
EXIT_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_STOPPED = 3
EXIT_ERRORS = 4
EXIT_INTERRUPTED = 130
