"""Side-by-side benchmarks of the embedded store against Orthanc (issue 7)."""
