# Used by bench/micro.sh only while the top-level CMakeLists.txt has no SLUICE_BENCH option:
# injected with -DCMAKE_PROJECT_sluice_INCLUDE=..., it includes bench/CMakeLists.txt at the end
# of the top-level file (deferred), so sluice_core exists when sluice_micro links against it.
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL include "${CMAKE_SOURCE_DIR}/bench/CMakeLists.txt")
