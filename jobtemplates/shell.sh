#!/usr/bin/env bash
## megamixer job template: plain shell (systems "local" and "dask").
## Lines starting with "##" are documentation and are not rendered; a line holding a
## placeholder whose value is unset is dropped. Placeholders:
##   name        job name, e.g. DES0001-run1-000000-000099
##   chunk_dir   chunk directory relative to the run directory (informational)
##   log         log file, relative to the chunk directory (stdout and stderr)
##   env         "export KEY=VALUE" lines: MEGAMIXER_PYTHON (the interpreter that ran setup),
##               PYTHONPATH when the package is not installed, NUMBA_CACHE_DIR (the run's
##               compiled-kernel cache)
##   extra_cmds  shell lines run before the command, after env, so they may change it
##               (e.g. activate an environment and set MEGAMIXER_PYTHON=python3)
##   command     the command, shell-quoted; file arguments are relative paths
##   exit_file   where the exit code goes (exit_status), relative to the chunk directory
##   walltime, mem, queue, cpus: not used by this template
## The script runs in its own folder, found from $0, so a run tree can be moved.
## It records "host pid start-time" of its shell in job.pid while it runs, so a later
## megamixit sees a chunk that is still running even if the process that started it died.
# megamixer job {{name}} (chunk {{chunk_dir}})
cd "$(dirname "$0")" || exit 1
rm -f {{exit_file}}
read -r -a _stat < /proc/$$/stat 2>/dev/null || true
printf '%s %s %s\n' "$(hostname)" "$$" "${_stat[21]:-0}" > job.pid
exec >> {{log}} 2>&1
echo "== megamixer job {{name}} start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
{{env}}
{{extra_cmds}}
{{command}}
status=$?
echo "== megamixer job {{name}} exit status ${status} $(date -u +%Y-%m-%dT%H:%M:%SZ)"
# written last and atomically: its presence means the command has finished
printf '%s\n' "${status}" > ".{{exit_file}}.$$" && mv -f ".{{exit_file}}.$$" {{exit_file}}
exit "${status}"
