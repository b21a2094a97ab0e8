wc -l < /valohai/inputs/data/data.txt > /valohai/outputs/model.txt
echo "trained $*"
