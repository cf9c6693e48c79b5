// netsem-soak's entry point: options, then the Driver (driver.h) runs the
// soak and maps its outcome to the exit code (soak_options.h). bench/soak/
// README.md says what the soak does and what its checker proves.
#include "driver.h"
#include "soak_options.h"

int main(int argc, char** argv) {
  netsem::soak::SoakOptions options;
  if (const auto exit_code = netsem::soak::parse_soak_options(argc, argv, options)) return *exit_code;
  netsem::soak::install_interrupt_handlers();
  netsem::soak::Driver driver(std::move(options));
  return driver.run();
}
