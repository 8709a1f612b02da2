/* placeholder: removed when the first io file lands */
int srlm_io_placeholder_(void);
int srlm_io_placeholder_(void) { return 0; }
