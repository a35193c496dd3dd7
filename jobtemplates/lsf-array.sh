#!/usr/bin/env bash
## megamixer job template: LSF job array, one array per tile (submitted by
## "bsub < <array script>" from the folder holding it and its index file).
## Element i (LSB_JOBINDEX, 1-based) runs the chunk on line i of the index file by
## executing that chunk's own job script (rendered from lsf.sh) with
## MEGAMIXER_CHUNK_DIR set; each chunk logs to its own log and writes its exit_status.
## Lines starting with "##" are documentation and are not rendered; a line holding a
## placeholder whose value is unset is dropped. Placeholders:
##   name        array name with its range, e.g. DES0001-run1-array[1-12] (-J)
##   sched_log   LSF's output file per element (-oo), %I is the element index
##   index       index file, relative to the submit folder: one chunk directory per line,
##               relative to the submit folder
##   script      name of the per-chunk job script inside each chunk directory
##   cpus        slots per element (-n)
##   walltime    [HH:]MM per element (-W)
##   queue       queue (-q)
##   mem         memory limit with unit, e.g. 2048MB (-M)
#BSUB -J "{{name}}"
#BSUB -oo {{sched_log}}
#BSUB -n {{cpus}}
#BSUB -W {{walltime}}
#BSUB -q {{queue}}
#BSUB -M {{mem}}
cd "${LS_SUBCWD}" || exit 1
chunk="$(sed -n "${LSB_JOBINDEX}p" {{index}})"
if [ -z "${chunk}" ]; then
    echo "megamixer: no chunk for element ${LSB_JOBINDEX} in {{index}}" >&2
    exit 1
fi
export MEGAMIXER_CHUNK_DIR="${LS_SUBCWD}/${chunk}"
exec bash "${MEGAMIXER_CHUNK_DIR}/{{script}}"
