import numpy as np
from fusednn import keras

x_train = np.random.random((1000, 10))
y_train = np.random.random((1000, 1))
model = keras.Sequential([
    keras.layers.Dense(64, activation='relu', input_shape=(10,)),
    keras.layers.Dense(64, activation='relu'),
    keras.layers.Dense(1)
])
model.compile(optimizer='adam', loss='mean_squared_error')
model.fit(x_train, y_train, epochs=100)
x_test = np.random.random((100, 10))
y_pred = model.predict(x_test)

for epoch in range(100):
    model.fit(x_train, y_train, batch_size=32, epochs=1, verbose=0)
    if (epoch+1) % 10 == 0:
        loss = model.evaluate(x_train, y_train, verbose=0)
        print(f"Epoch {epoch+1}: Loss = {loss}")
predictions = model.predict(x_test)
print(f"Predictions: {predictions}")
