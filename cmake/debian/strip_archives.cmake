# Run by cpack (CPACK_PRE_BUILD_SCRIPTS) on the package's tree, after the
# install and before the .deb is made: drops the debugging information from
# the static libnetsem.a, which CPACK_STRIP_FILES leaves in (it strips
# executables and shared libraries only): 35 MB of a RelWithDebInfo build.
find_program(NETSEM_STRIP NAMES strip REQUIRED)
file(GLOB_RECURSE archives "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*.a")
foreach(archive IN LISTS archives)
  execute_process(COMMAND ${NETSEM_STRIP} --strip-debug ${archive} COMMAND_ERROR_IS_FATAL ANY)
endforeach()
