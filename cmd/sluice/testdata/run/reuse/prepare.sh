cp /valohai/inputs/raw/raw.txt /valohai/outputs/data.txt
echo prepared
