"""DICOMweb servers as a data source."""
