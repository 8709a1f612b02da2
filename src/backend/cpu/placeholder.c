/* placeholder: the backend owner replaces this file */
#include "srlm/core.h"
int srlm_backend_placeholder_(void);
int srlm_backend_placeholder_(void) { return 0; }
