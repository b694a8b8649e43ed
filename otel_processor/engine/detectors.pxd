# C types for detectors.py when setup.py compiles it (Cython); the .py is the source of truth.
from otel_processor.engine.features cimport Features


cdef class NewValueDetector:
    cdef public list values
    cdef public list late_new
    cdef public object first_network
    cdef public long long networks_seen
    cdef public long long novel_window
    cdef public long long novel_count


cdef class VolumeDetector:
    cdef public long long window
    cdef public long long count
    cdef public double volume
    cdef public object targets
    cdef public long long max_count
    cdef public double max_volume
    cdef public long long max_distinct
    cdef public long long windows_seen
    cdef public double reported
    cdef public object first_source


cdef class FailureBurstDetector:
    cdef public long long window
    cdef public long long failures
    cdef public long long max_failures
    cdef public long long windows_seen
    cdef public double reported
    cdef public object actions


cdef class ScheduleDetector:
    cdef public object hours_mask
    cdef public object days_mask
    cdef public long long reported_window


cdef class SequenceDetector:
    cdef public long long prev
    cdef public object transitions
    cdef public object classes
