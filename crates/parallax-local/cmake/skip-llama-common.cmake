# Included after each `project()` in llama.cpp's CMake tree (CMAKE_PROJECT_INCLUDE, set in
# .cargo/config.toml; llama-cpp-sys-2's build script passes CMAKE_* variables on).
#
# llama-cpp-2 turns on llama-cpp-sys-2's default `common` feature, which builds llama.cpp's
# `common` library: argument parsing, chat parsers, downloads — about a third of the C++
# build. parallax never calls it (parallax-local leaves llama-cpp-2's own `common` feature
# off, so nothing links against it), so it is switched off here before `option()` sees it.
# The build script then warns that it found no common library; that warning is expected.
if(PROJECT_NAME STREQUAL "llama.cpp")
  set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
endif()

# ggml compiles its AMX kernels when `-march=native` finds AMX (Sapphire Rapids and later).
# On such a machine (a 2-core VM) they crashed in the first `llama_decode` of both models
# parallax fetches (SIGSEGV in `ggml_backend_amx_mul_mat`). Undefining the feature macros
# leaves ggml on its AVX-512 kernels; nothing else tests for them.
if(PROJECT_NAME STREQUAL "ggml")
  add_compile_options(-U__AMX_TILE__ -U__AMX_INT8__ -U__AMX_BF16__)
endif()
