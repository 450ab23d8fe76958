//! End-to-end tests of the `xtask` binary against real outside programs.

// A one-node Slurm cluster (munged, slurmctld, slurmd) started for a test and stopped on drop.
mod cluster;

// `reproduce --slurm --submit`: a 3-task array and a merge job on that cluster, whose tables
// equal a single process's.
mod slurm;
