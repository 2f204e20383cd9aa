# Sourced by run.sh and check.sh: cudarc loads libcuda and libnvrtc at run time, so the
# driver's folder goes first on the library path, then every folder holding an NVRTC, never
# the toolkit's stubs/ (its libcuda.so is a stub that answers CUDA_ERROR_STUB_LIBRARY, which
# the first run of 2026-12-04 found).
LD=/usr/local/nvidia/lib64
for d in $(find /usr/local/cuda*/ /opt/torch/.venv/lib/python3.12/site-packages/nvidia \
    -name 'libnvrtc.so*' 2> /dev/null | grep -v /stubs/ | xargs -r -n1 dirname | sort -u); do
    LD=$LD:$d
done
export LD_LIBRARY_PATH=$LD:${LD_LIBRARY_PATH:-}
