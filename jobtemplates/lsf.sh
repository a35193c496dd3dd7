#!/usr/bin/env bash
## megamixer job template: LSF, one job per chunk (submitted by "bsub < job.lsf" with
## the chunk directory as working directory).
## Lines starting with "##" are documentation and are not rendered; a line holding a
## placeholder whose value is unset is dropped (no walltime -> no "#BSUB -W").
## Placeholders:
##   name        job name (-J), e.g. DES0001-run1-000000-000099
##   chunk_dir   chunk directory relative to the run directory (informational)
##   log         the command's log, relative to the chunk directory (stdout and stderr)
##   sched_log   LSF's own output file (-oo): LSF may copy its spooled output there when
##               the job ends, so it must not be the command's log
##   cpus        slots (-n)
##   walltime    [HH:]MM, rounded up to whole minutes (-W)
##   queue       queue (-q)
##   mem         memory limit with unit, e.g. 2048MB (-M)
##   env         "export KEY=VALUE" lines: MEGAMIXER_PYTHON (the interpreter that ran setup),
##               PYTHONPATH when the package is not installed, NUMBA_CACHE_DIR (the run's
##               compiled-kernel cache)
##   extra_cmds  shell lines run before the command, after env, so they may change it
##               (e.g. activate an environment and set MEGAMIXER_PYTHON=python3)
##   command     the command, shell-quoted; file arguments are relative paths
##   exit_file   where the exit code goes (exit_status), relative to the chunk directory
## The chunk directory comes from LS_SUBCWD (or MEGAMIXER_CHUNK_DIR when a job array
## dispatches to this script): no absolute path is baked in.
#BSUB -J {{name}}
#BSUB -oo {{sched_log}}
#BSUB -n {{cpus}}
#BSUB -W {{walltime}}
#BSUB -q {{queue}}
#BSUB -M {{mem}}
# megamixer job {{name}} (chunk {{chunk_dir}})
cd "${MEGAMIXER_CHUNK_DIR:-${LS_SUBCWD:-$(dirname "$0")}}" || exit 1
rm -f {{exit_file}}
exec >> {{log}} 2>&1
echo "== megamixer job {{name}} start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) lsf job ${LSB_JOBID:-?}"
{{env}}
{{extra_cmds}}
{{command}}
status=$?
echo "== megamixer job {{name}} exit status ${status} $(date -u +%Y-%m-%dT%H:%M:%SZ)"
# written last and atomically: its presence means the command has finished
printf '%s\n' "${status}" > ".{{exit_file}}.$$" && mv -f ".{{exit_file}}.$$" {{exit_file}}
exit "${status}"
