"""Developer tooling: run the serverless system on one machine with the Google emulators."""
