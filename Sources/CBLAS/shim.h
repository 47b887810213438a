#include <cblas.h>
// OpenBLAS extensions (thread control), declared by its cblas.h on Debian.
