// corral: the command-line client of corrald.
#include <string>
#include <vector>

#include "client/commands.h"

int main(int argc, char** argv) {
  return corral::cli::RunCli(std::vector<std::string>(argv + 1, argv + argc));
}
