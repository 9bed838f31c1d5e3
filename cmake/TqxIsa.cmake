# Per-file ISA flags: SIMD code gets its -m flags on its own source files only, never globally,
# so the rest of the library still runs on any x86-64 CPU (see STYLE.md).
set(TQX_ISA_FLAGS_AVX2 "-mavx2 -mfma -mf16c")
# GCC 12 warns falsely about _mm512_undefined_* inside its own intrinsics headers.
set(TQX_ISA_FLAGS_AVX512 "-mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mavx2 -Wno-maybe-uninitialized -Wno-uninitialized")
set(TQX_ISA_FLAGS_AVX_VNNI "${TQX_ISA_FLAGS_AVX2} -mavxvnni")
set(TQX_ISA_FLAGS_AVX512_VNNI "${TQX_ISA_FLAGS_AVX512} -mavx512vnni")
set(TQX_ISA_FLAGS_AMX "${TQX_ISA_FLAGS_AVX512_VNNI} -mamx-tile -mamx-int8")

function(tqx_set_isa_flags sources isa)
  if(sources)
    set_source_files_properties(${sources} PROPERTIES COMPILE_FLAGS "${TQX_ISA_FLAGS_${isa}}")
  endif()
endfunction()
