# The Debian package: `cpack -G DEB --config CPackConfig.cmake` in a build
# directory (or `cmake --build build --target package`) makes
# netsem_<version>_<arch>.deb from the binaries already built there. It holds
# what `cmake --install` installs, under /usr (the library in
# /usr/lib/<multiarch>), except the example configuration, which the package
# has as the conffile /etc/netsem/netsem.ini; plus the systemd unit in
# /lib/systemd/system and maintainer scripts (cmake/debian/) that enable and
# start it as Debian's daemons do. tests/package/deb_test.sh checks it.

# Files only the package has: absolute destinations, so they are in a
# component that `cmake --install` leaves out (EXCLUDE_FROM_ALL) and only
# cpack asks for.
install(FILES etc/netsem.ini DESTINATION /etc/netsem COMPONENT deb EXCLUDE_FROM_ALL)
# The unit: etc/systemd/netsemd.service runs /usr/sbin/netsemd with
# /etc/netsem/netsem.ini, the package's paths. /lib, not /usr/lib: where
# Debian 12's packages put units.
install(FILES etc/systemd/netsemd.service DESTINATION /lib/systemd/system COMPONENT deb EXCLUDE_FROM_ALL)

# Who the package names as its maintainer. A placeholder until the project
# has an address (lintian: bogus-mail-host); set it when building a package
# to hand out: cmake -DNETSEM_PACKAGE_CONTACT="Name <address>" build
set(NETSEM_PACKAGE_CONTACT "the netsem authors <netsem@localhost>" CACHE STRING
  "Maintainer of the Debian package: Name <address>")
# The changelog a native Debian package carries (one entry: this version),
# dated by SOURCE_DATE_EPOCH when set, for a reproducible package; and the
# lintian overrides of the one-package layout (cmake/debian/lintian-overrides).
string(TIMESTAMP NETSEM_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file(cmake/debian/changelog.in ${PROJECT_BINARY_DIR}/debian/changelog @ONLY)
find_program(NETSEM_GZIP gzip REQUIRED)
execute_process(COMMAND ${NETSEM_GZIP} -9nc ${PROJECT_BINARY_DIR}/debian/changelog
  OUTPUT_FILE ${PROJECT_BINARY_DIR}/debian/changelog.gz COMMAND_ERROR_IS_FATAL ANY)
install(FILES ${PROJECT_BINARY_DIR}/debian/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT deb EXCLUDE_FROM_ALL)
install(FILES cmake/debian/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides
  RENAME netsem COMPONENT deb EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME netsem)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "the netsem authors")
set(CPACK_PACKAGE_CONTACT "${NETSEM_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "network counting semaphores: server netsemd, client netsem, libnetsem")
set(CPACK_PACKAGE_DESCRIPTION "\
netsem shares named counting semaphores between every host that talks to one
netsemd: at most N holders of a name at once, across machines, with FIFO
queues, leases that end with a lost session and fences for each grant.
This package has the server netsemd (run by netsemd.service), the
command-line client netsem, and the C++20 client library libnetsem (shared
and static) with its headers, CMake package and pkg-config file.")
# Everything under /usr but the files with an absolute destination above,
# which DESTDIR puts in the package's tree, never on the building machine.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL Unspecified deb)
set(CPACK_DEBIAN_PACKAGE_NAME netsem)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: computed by dpkg-shlibdeps (dpkg-dev) from the binaries' and the
# library's needs; a shlibs file and the ldconfig trigger for libnetsem.so.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY "=")
# Linking the static libnetsem.a needs spdlog and fmt; nothing else does.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libspdlog-dev, libfmt-dev")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/cmake/debian/conffiles
  ${PROJECT_SOURCE_DIR}/cmake/debian/postinst
  ${PROJECT_SOURCE_DIR}/cmake/debian/prerm
  ${PROJECT_SOURCE_DIR}/cmake/debian/postrm
  ${PROJECT_SOURCE_DIR}/cmake/debian/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Binaries and libraries without their debugging information (strip_archives
# for libnetsem.a).
set(CPACK_STRIP_FILES ON)
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_SOURCE_DIR}/cmake/debian/strip_archives.cmake)
include(CPack)
