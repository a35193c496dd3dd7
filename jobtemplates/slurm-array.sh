#!/usr/bin/env bash
## megamixer job template: SLURM job array, one array per tile (submitted by
## "sbatch --parsable <array script>" from the folder holding it and its index file).
## Task i runs the chunk listed on line i+1 of the index file by executing that chunk's
## own job script (rendered from slurm.sh) with MEGAMIXER_CHUNK_DIR set; each chunk
## still logs to its own log and writes its own exit_status.
## Lines starting with "##" are documentation and are not rendered; a line holding a
## placeholder whose value is unset is dropped. Placeholders:
##   name        array job name (-J)
##   log         the array's own output file (-o), relative to the submit folder; %a is
##               the task id (only errors of the dispatch itself land there)
##   array       task range, e.g. 0-11 (--array)
##   index       index file, relative to the submit folder: one chunk directory per line,
##               relative to the submit folder
##   script      name of the per-chunk job script inside each chunk directory
##   walltime    HH:MM:SS per task (-t)
##   mem         memory per task, e.g. 2048M (--mem)
##   queue       partition (-p)
##   cpus        CPUs per task (-c)
#SBATCH -J {{name}}
#SBATCH -o {{log}}
#SBATCH --open-mode=append
#SBATCH --array={{array}}
#SBATCH -t {{walltime}}
#SBATCH --mem={{mem}}
#SBATCH -p {{queue}}
#SBATCH -c {{cpus}}
cd "${SLURM_SUBMIT_DIR}" || exit 1
chunk="$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {{index}})"
if [ -z "${chunk}" ]; then
    echo "megamixer: no chunk for task ${SLURM_ARRAY_TASK_ID} in {{index}}" >&2
    exit 1
fi
export MEGAMIXER_CHUNK_DIR="${SLURM_SUBMIT_DIR}/${chunk}"
exec bash "${MEGAMIXER_CHUNK_DIR}/{{script}}"
