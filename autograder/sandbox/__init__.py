"""The bubblewrap sandbox of one student kernel, its cgroup limits (memory, processes, CPU), the CPU-time
limits that read them, and removing what a kernel wrote."""
