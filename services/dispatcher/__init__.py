"""The dispatcher: schedules PENDING runs, claims GPUs through the registry, starts
and supervises one worker per run, and reports every outcome back."""
