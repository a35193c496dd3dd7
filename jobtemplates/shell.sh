#!/usr/bin/env bash
## megamixer job template: plain shell (systems "local" and "dask").
## Lines starting with "##" are documentation and are not rendered; a line holding a
## placeholder whose value is unset is dropped. Placeholders:
##   name        job name, e.g. DES0001-run1-000000-000099
##   chunk_dir   chunk directory relative to the run directory (informational)
##   log         log file, relative to the chunk directory (stdout and stderr)
##   extra_cmds  shell lines run before the command (e.g. activating an environment)
##   env         "export KEY=VALUE" lines
##   command     the command, shell-quoted; file arguments are relative paths
##   exit_file   where the exit code goes (exit_status), relative to the chunk directory
##   walltime, mem, queue, cpus: not used by this template
## The script runs in its own folder, found from $0, so a run tree can be moved.
# megamixer job {{name}} (chunk {{chunk_dir}})
cd "$(dirname "$0")" || exit 1
rm -f {{exit_file}}
exec >> {{log}} 2>&1
echo "== megamixer job {{name}} start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
{{extra_cmds}}
{{env}}
{{command}}
status=$?
echo "== megamixer job {{name}} exit status ${status} $(date -u +%Y-%m-%dT%H:%M:%SZ)"
# written last and atomically: its presence means the command has finished
printf '%s\n' "${status}" > ".{{exit_file}}.$$" && mv -f ".{{exit_file}}.$$" {{exit_file}}
exit "${status}"
