#!/usr/bin/env bash
## megamixer job template: SLURM, one job per chunk (submitted by "sbatch --parsable
## job.slurm" with the chunk directory as working directory).
## Lines starting with "##" are documentation and are not rendered; a line holding a
## placeholder whose value is unset is dropped (no walltime -> no "#SBATCH -t").
## Placeholders:
##   name        job name (-J), e.g. DES0001-run1-000000-000099
##   chunk_dir   chunk directory relative to the run directory (informational)
##   log         log file relative to the chunk directory (-o, opened in append mode so
##               a resubmitted chunk keeps the earlier attempts' output)
##   walltime    HH:MM:SS (-t)
##   mem         memory per node, e.g. 2048M (--mem)
##   queue       partition (-p)
##   cpus        CPUs per task (-c)
##   env         "export KEY=VALUE" lines: MEGAMIXER_PYTHON (the interpreter that ran setup),
##               PYTHONPATH when the package is not installed, NUMBA_CACHE_DIR (the run's
##               compiled-kernel cache)
##   extra_cmds  shell lines run before the command, after env, so they may change it
##               (e.g. activate an environment and set MEGAMIXER_PYTHON=python3)
##   command     the command, shell-quoted; file arguments are relative paths
##   exit_file   where the exit code goes (exit_status), relative to the chunk directory
## SLURM runs a copy of the script, so the chunk directory comes from SLURM_SUBMIT_DIR
## (or MEGAMIXER_CHUNK_DIR when a job array dispatches to this script): no absolute
## path is baked in and a run tree can be moved.
#SBATCH -J {{name}}
#SBATCH -o {{log}}
#SBATCH --open-mode=append
#SBATCH -t {{walltime}}
#SBATCH --mem={{mem}}
#SBATCH -p {{queue}}
#SBATCH -c {{cpus}}
# megamixer job {{name}} (chunk {{chunk_dir}})
cd "${MEGAMIXER_CHUNK_DIR:-${SLURM_SUBMIT_DIR:-$(dirname "$0")}}" || exit 1
rm -f {{exit_file}}
exec >> {{log}} 2>&1
echo "== megamixer job {{name}} start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) slurm job ${SLURM_JOB_ID:-?}"
{{env}}
{{extra_cmds}}
{{command}}
status=$?
echo "== megamixer job {{name}} exit status ${status} $(date -u +%Y-%m-%dT%H:%M:%SZ)"
# written last and atomically: its presence means the command has finished
printf '%s\n' "${status}" > ".{{exit_file}}.$$" && mv -f ".{{exit_file}}.$$" {{exit_file}}
exit "${status}"
