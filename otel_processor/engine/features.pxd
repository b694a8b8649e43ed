# C types for features.py when setup.py compiles it (Cython); the .py is the source of truth.
cdef class Features:
    cdef public object obs
    cdef public str action_class
    cdef public long long action_h
    cdef public object target_h
    cdef public object network
    cdef public bint network_private
    cdef public object network_h
    cdef public object ua
    cdef public object ua_h
    cdef public object country_h
    cdef public long long window
    cdef public long long hour
    cdef public long long weekday
    cdef public bint succeeded
    cdef public long long class_index
