# C types for engine.py when setup.py compiles it (Cython); the .py is the source of truth.
from otel_processor.engine.detectors cimport (
    FailureBurstDetector,
    NewValueDetector,
    ScheduleDetector,
    SequenceDetector,
    VolumeDetector,
)


cdef class Profile:
    cdef public object identity
    cdef public long long first_ns
    cdef public long long last_ns
    cdef public long long count
    cdef public long long last_success_ns
    cdef public long long registered_ns
    cdef public NewValueDetector new_values
    cdef public VolumeDetector volume
    cdef public FailureBurstDetector failures
    cdef public ScheduleDetector schedule
    cdef public SequenceDetector sequence
    cdef public object case
    cdef public double drop
    cdef public long long drop_ns
    cdef public int tier
    cdef public object first_sight


cdef class Engine:
    cdef public object config
    cdef public object catalog
    cdef public object rules
    cdef public object _lock
    cdef public object _roster
    cdef public object _peers
    cdef public object _chain
    cdef public object _credentials
    cdef public object _credential_book
    cdef public object _first_sight
    cdef public object _grants
    cdef public list _events
    cdef public list _pending
    cdef public tuple _caps
    cdef public long long _warmup_ns
    cdef public long long _backfill_ns
    cdef public long long _window_ns
    cdef public long long _quiet_ns
    cdef public double _half_life_ns
    cdef public long long _confirm_ns
