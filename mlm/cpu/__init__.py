"""Everything that exists because the device is a CPU: training kernels (`kernels`), glibc's malloc
(`memory`) and the thread count chosen by measurement (`threads`)."""
